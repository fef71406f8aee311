"""Labels, units and help texts for every training setting.

The command line builds its ``--help`` from these and the window builds its
form and tooltips from them, so both describe a setting in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.core.config import CONSTRAINTS, D_NORMS, DEVICES, FIELD_NAMES, LOSSES, OPTIMIZERS, PRESETS


@dataclass(frozen=True)
class FieldInfo:
    """Presentation of one ``TrainConfig`` field: label, help text, kind, unit and allowed values."""

    label: str
    help: str
    kind: str                        # "int", "float", "choice", "betas", "data"
    unit: str = ""
    choices: tuple[str, ...] = ()
    range_text: str = ""             # allowed values, in words


FIELDS: dict[str, FieldInfo] = {
    "data": FieldInfo("Data set", "Training data: ring8, grid25 or spiral (built-in 2D mixtures), "
                      "mnist:PATH, fashion-mnist:PATH, cifar10:PATH or folder:PATH.", "data"),
    "preset": FieldInfo("Preset", "A published recipe that sets the loss, constraint, optimizer, "
                        "learning rates, betas and n_critic; any of them can be changed afterwards.",
                        "choice", choices=("custom", *PRESETS)),
    "loss": FieldInfo("Loss", "The GAN variant: bce (original GAN, non-saturating generator loss), "
                      "wasserstein (linear critic), hinge, or lsgan (least squares).", "choice", choices=LOSSES),
    "constraint": FieldInfo("Constraint", "Lipschitz constraint on the discriminator: none, clip (weight "
                            "clipping), gp (gradient penalty) or sn (spectral normalization).",
                            "choice", choices=CONSTRAINTS),
    "steps": FieldInfo("Steps", "Number of generator updates to train for.", "int", range_text=">= 1"),
    "batch_size": FieldInfo("Batch size", "Samples per batch, for every discriminator and generator update.",
                            "int", range_text="1 to 65536"),
    "n_critic": FieldInfo("n_critic", "Discriminator updates per generator step, each on its own batch.",
                          "int", "updates", range_text="1 to 100"),
    "optimizer": FieldInfo("Optimizer", "Optimizer for both networks.", "choice", choices=OPTIMIZERS),
    "lr_g": FieldInfo("Generator learning rate", "Learning rate of the generator's optimizer.",
                      "float", range_text="> 0 and <= 1"),
    "lr_d": FieldInfo("Discriminator learning rate", "Learning rate of the discriminator's optimizer.",
                      "float", range_text="> 0 and <= 1"),
    "betas": FieldInfo("Adam betas", "Adam's coefficients for the running averages of the gradient and "
                       "its square (ignored by RMSprop).", "betas", range_text="each in [0, 1)"),
    "clip_value": FieldInfo("Clip value", "With constraint clip: every discriminator parameter is clamped "
                            "to [-c, c] after each discriminator update.", "float", range_text="> 0"),
    "gp_weight": FieldInfo("Gradient penalty weight", "With constraint gp: lambda in "
                           "lambda * (||grad D(x_hat)|| - 1)^2.", "float", range_text="> 0"),
    "z_dim": FieldInfo("Latent size", "Dimension of the generator's Gaussian noise input; "
                       "0 picks 2 for 2D data and 64 for images.", "int", range_text="0 to 4096"),
    "width": FieldInfo("Width", "Hidden units of the 2D models, or base channel count of the "
                       "convolutional models; 0 picks 128 and 32.", "int", range_text="0 to 4096"),
    "d_norm": FieldInfo("Discriminator normalization", "auto uses LayerNorm with gp, none with sn and "
                        "BatchNorm otherwise for images (none for 2D data).", "choice", choices=D_NORMS),
    "image_size": FieldInfo("Image size", "Side of the square images; 0 keeps the data set's size.",
                            "int", "pixels", range_text="0, 28, 32 or 64"),
    "channels": FieldInfo("Channels", "1 for grayscale, 3 for RGB; 0 keeps the data set's own.",
                          "int", range_text="0, 1 or 3"),
    "seed": FieldInfo("Seed", "Random seed; the same seed on the CPU repeats a run exactly.", "int",
                      range_text=">= 0"),
    "device": FieldInfo("Device", "auto picks CUDA, then Apple MPS, then the CPU.", "choice", choices=DEVICES),
    "sample_every": FieldInfo("Sample every", "Steps between sample images written to the run folder.",
                              "int", "steps", range_text=">= 1"),
    "checkpoint_every": FieldInfo("Checkpoint every", "Steps between checkpoints.", "int", "steps",
                                  range_text=">= 1"),
    "log_every": FieldInfo("Log every", "Steps between summary lines in the log.", "int", "steps",
                           range_text=">= 1"),
    "num_samples": FieldInfo("Samples shown", "Size of the fixed noise batch drawn for the samples view.",
                             "int", "samples", range_text="1 to 1024"),
}

assert set(FIELDS) == set(FIELD_NAMES), "every TrainConfig field needs a FieldInfo"
