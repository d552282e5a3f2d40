"""The adversarial base shared by the two GAN stages (`stage1`, `videogan`).

A subclass builds ``self.generator`` and ``self.discriminator``, says what the losses are
(:meth:`discriminator_terms`, :meth:`generator_terms`) and how to sample (:meth:`sampling_inputs`,
:meth:`sample`); this class runs the loop with Lightning's manual optimization, from two option groups that
both GANs share, ``model.optim`` (:class:`Optim`) and ``model.ema`` (:class:`Ema`):

- ``optim.d_steps`` discriminator updates per generator update, each on the same batch;
- logits-based losses (``bce`` = BCE-with-logits, or ``hinge``), safe under mixed precision
  because nothing passes through a sigmoid before the loss;
- gradient-norm clipping through Lightning (so AMP gradients are unscaled first);
- an optional EMA copy of the generator, used for sampling;
- ``gan_step``, a counter of generator updates kept in the checkpoint. Lightning's
  ``global_step`` counts optimizer steps (``d_steps + 1`` per batch); ``optimizer_steps_per_batch``
  lets the training app translate ``trainer.max_steps`` into GAN steps.

Logged under ``train/`` every step (loggers receive them every ``trainer.log_every_n_steps`` GAN
steps): the subclass's terms (``g_loss``, ``d_loss``, ``d_real``, ``d_fake``, ``d_wrong``, ...) and
``gan_step``. On the steps the loggers write, also the health signals: ``grad_norm_g`` and
``grad_norm_d`` (total gradient norms before clipping) and ``diversity`` (the mean per-element
standard deviation of the generator's batch: it falls towards 0 when the samples collapse to one).

Under DDP the trainer needs ``strategy=ddp_find_unused_parameters_true``: the D update never
touches G's parameters and vice versa.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from t2v.errors import T2VError
from t2v.models.settings import at_least, one_of, settings
from t2v.models.stage import StageModule, adam

GAN_LOSSES = ("bce", "hinge")
# An option group as the config gives it (``model.generator``, ...): a mapping, or None for every default.
Group = dict[str, Any] | None


@dataclass
class Losses:
    """``model.losses``: the adversarial loss; each GAN adds the weights of its other terms."""

    gan: str = "bce"  # bce (BCE with logits) | hinge

    def __post_init__(self) -> None:
        one_of("losses", "gan", self.gan, GAN_LOSSES)


@dataclass
class Optim:
    """``model.optim``: Adam for G and for D (DCGAN/StackGAN: 2e-4, betas (0.5, 0.999))."""

    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    d_steps: int = 1  # D updates per G update, each on the same batch
    clip_grad_norm: float | None = None  # each network's gradient norm is clipped to this; None: no clipping

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        at_least("optim", 1, d_steps=self.d_steps)
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise T2VError(f"model.optim.{name}={getattr(self, name)} must be positive (published: 2e-4)")


@dataclass
class Ema:
    """``model.ema``: an exponential moving average of G's weights, used for sampling (decay 0: none)."""

    decay: float = 0.0
    start: int = 0  # the G update from which the average follows G

    def __post_init__(self) -> None:
        if not 0 <= self.decay < 1:
            raise T2VError(f"model.ema.decay={self.decay} must be in [0, 1); 0 switches the EMA generator off")


class GanLoss:
    """The three adversarial terms, from discriminator logits."""

    def __init__(self, kind: str = "bce") -> None:
        one_of("losses", "gan", kind, GAN_LOSSES)
        self.kind = kind

    def real(self, logits: Tensor) -> Tensor:
        """D's loss for inputs it should call real."""
        if self.kind == "hinge":
            return F.relu(1.0 - logits).mean()
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def fake(self, logits: Tensor) -> Tensor:
        """D's loss for inputs it should call fake (generated, or real with the wrong caption)."""
        if self.kind == "hinge":
            return F.relu(1.0 + logits).mean()
        return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))

    def generator(self, logits: Tensor) -> Tensor:
        """G's loss: make D call its samples real (the non-saturating form for BCE)."""
        if self.kind == "hinge":
            return -logits.mean()
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def downsampling_levels(size: int) -> int:
    """How many x2 steps lie between 4x4 and ``size``; both GANs' stacks work on powers of 2 only."""
    if size < 16 or size & (size - 1):
        raise T2VError(
            f"model.size={size} must be a power of 2 of at least 16 (the networks halve it down to 4x4; "
            "it follows data.size); use data.size=16, 32, 64 or 128"
        )
    return size.bit_length() - 3  # log2(size) - log2(4)


def grad_norm(parameters: list[nn.Parameter]) -> Tensor:
    """The total L2 norm of the gradients of ``parameters`` (0 when none has a gradient)."""
    norms = [torch.linalg.vector_norm(p.grad.detach().float()) for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def batch_diversity(samples: Tensor) -> Tensor:
    """Intra-batch diversity: the per-element standard deviation across the batch, averaged (0 = all equal)."""
    flat = samples.detach().float().flatten(1)
    return flat.std(dim=0).mean() if len(flat) > 1 else torch.zeros((), device=flat.device)


def generated_samples(output: Any) -> Tensor | None:
    """The samples in a generator's output: a tensor, the first tensor of a tuple, or a dict's ``video``/``image``."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], Tensor):
        return output[0]
    if isinstance(output, dict):
        return next((output[k] for k in ("video", "image", "images") if isinstance(output.get(k), Tensor)), None)
    return None


def mode_seeking(a: Tensor, b: Tensor, z_a: Tensor, z_b: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's mode-seeking term (Mao et al. 2019) for two samples of the same conditions from noises ``z_a`` and
    ``z_b``: the inverse of how far apart the samples lie per unit of noise distance. G minimises it, so it cannot
    ignore its noise and give every sample of a caption the same picture (mode collapse)."""
    spread = (a.float() - b.float()).abs().mean() / (z_a.float() - z_b.float()).abs().mean()
    return 1.0 / (spread + eps)


def probability(logits: Tensor) -> Tensor:
    """Mean D output as a probability, for the health signals d_real / d_fake / d_wrong."""
    return torch.sigmoid(logits.detach().float()).mean()


class AdversarialModule(StageModule):
    """Manual-optimization GAN loop. Subclasses set ``generator`` and ``discriminator``."""

    generator: nn.Module
    discriminator: nn.Module

    def __init__(
        self,
        losses: Losses | None = None,
        width: float = 1.0,
        optim: Group = None,
        ema: Group = None,
        compile: bool = False,
    ) -> None:
        """``losses``: the subclass's ``model.losses`` (a :class:`Losses`); ``width``: the channel multiplier of
        both networks; ``optim``, ``ema``: the shared groups; ``compile``: train through ``torch.compile``
        (:meth:`configure_model`)."""
        super().__init__()
        if width <= 0:
            raise T2VError(f"model.width={width} must be positive; 1.0 is the published network, 0.125 a CPU-sized one")
        self.automatic_optimization = False
        self.losses = losses or Losses()
        self.optim = settings(Optim, "optim", optim)
        self.ema = settings(Ema, "ema", ema)
        self.gan = GanLoss(self.losses.gan)
        self.register_buffer("gan_step", torch.zeros((), dtype=torch.long))
        self.generator_ema: AveragedModel | None = None
        self.compiled = compile
        # What training_step calls for each update's loss terms: the methods themselves, or compiled ones.
        self.d_terms, self.g_terms = self.discriminator_terms, self.generator_terms
        self.step_terms: dict[str, Tensor] = {}

    def shared_hparams(self) -> dict[str, Any]:
        """The optimiser and EMA groups as they will be saved: every key, defaults filled in."""
        optim = {**asdict(self.optim), "betas": list(self.optim.betas)}
        return {"optim": optim, "ema": asdict(self.ema), "compile": self.compiled}

    # -- what subclasses provide ------------------------------------------------------------------
    def discriminator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Loss terms of one D update; must hold ``d_loss``. Generate samples under no_grad here."""
        raise NotImplementedError

    def generator_terms(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Loss terms of one G update; must hold ``g_loss``."""
        raise NotImplementedError

    def sampling_inputs(self, batch: dict[str, Any], noise: torch.Generator) -> dict[str, Tensor]:
        """Everything :meth:`sample` needs for the captions (and clips) of ``batch``, the noise drawn from ``noise``:
        the samples callback makes them once and shows the same inputs all through training."""
        raise NotImplementedError

    def sample(self, inputs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Samples for :meth:`sampling_inputs`: ``image`` (B, 3, H, W), or ``video`` (B, 3, T, H, W) with the panels
        that show how it was made (``input``, ``foreground``, ``background``, ``mask``)."""
        raise NotImplementedError

    def real_samples(self, batch: dict[str, Any]) -> Tensor:
        """The real counterpart of :meth:`sample`'s output for ``batch``: what D compares G's samples with."""
        raise NotImplementedError

    def generator_parameters(self) -> list[nn.Parameter]:
        """What the G optimizer updates (override to add e.g. a conditioning network)."""
        return [p for p in self.generator.parameters() if p.requires_grad]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.discriminator.parameters() if p.requires_grad]

    # -- the loop -------------------------------------------------------------------------------
    @property
    def optimizer_steps_per_batch(self) -> int:
        return self.optim.d_steps + 1

    @property
    def gan_steps_done(self) -> int:
        """The GAN steps so far, as the ``gan_step`` buffer counts them but read from Lightning's optimizer-step count
        (a plain int): reading the buffer of a model on a GPU waits for the device, every step."""
        trainer = self._trainer
        return int(self.gan_step) if trainer is None else trainer.global_step // self.optimizer_steps_per_batch

    def configure_model(self) -> None:
        """With ``compile`` (``model.compile=true``), route each update's loss terms through ``torch.compile``: G's
        and D's forward passes and the losses as graphs, hence their backward too. Lightning calls this in every
        process it starts, so the module stays picklable; generation (``generate``) runs eagerly. Off by default:
        on 2 CPU cores it compiled for over a minute and trained no faster (docs/results.md, Speed)."""
        if self.compiled and self.d_terms == self.discriminator_terms:
            self.d_terms, self.g_terms = torch.compile(self.discriminator_terms), torch.compile(self.generator_terms)

    def setup_ema(self) -> None:
        """Call at the end of a subclass's __init__, once ``generator`` exists."""
        if self.ema.decay > 0:
            self.generator_ema = AveragedModel(self.generator, multi_avg_fn=get_ema_multi_avg_fn(self.ema.decay))
            self.generator_ema.requires_grad_(False)

    @property
    def sampling_generator(self) -> nn.Module:
        """The EMA generator when there is one (smoother samples), else the trained one."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    @torch.no_grad()
    def update_ema(self) -> None:
        """Average G's weights into the EMA copy, and copy its buffers: AveragedModel averages
        parameters only, so BatchNorm running statistics would otherwise stay at their initial values
        and eval-mode samples from the EMA generator would be wrong."""
        if self.generator_ema is None or self.gan_steps_done < self.ema.start:
            return
        self.generator_ema.update_parameters(self.generator)
        for ema_buffer, buffer in zip(self.generator_ema.module.buffers(), self.generator.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def health_step(self) -> bool:
        """Whether this batch's health signals are measured: on the GAN steps the loggers write
        (every ``trainer.log_every_n_steps``), so measuring costs nothing on the other steps."""
        trainer = self._trainer
        every = trainer.log_every_n_steps if trainer is not None else 0
        if not every:
            return False
        return (self.gan_steps_done + 1) % every == 0

    def _update(self, optimizer: Any, loss: Tensor, measure: bool = False) -> Tensor | None:
        """One optimizer step on ``loss``; with ``measure``, returns the gradient norm before clipping."""
        optimizer.zero_grad(set_to_none=True)
        # Lightning runs all of training_step under autocast, but a backward under autocast is slow (bf16 stage-I at
        # the published size: 47% -> 81% of the CPU's bf16 peak without it) and needs none: each op's backward takes
        # the dtype its forward had.
        with torch.autocast(self.device.type, enabled=False):
            self.manual_backward(loss)
        norm = None
        if measure:
            norm = grad_norm([p for group in optimizer.param_groups for p in group["params"]])
            scaler = getattr(self.trainer.precision_plugin, "scaler", None)  # fp16: gradients are still scaled
            if scaler is not None:
                norm = norm / scaler.get_scale()
        if self.optim.clip_grad_norm:
            self.clip_gradients(optimizer, gradient_clip_val=self.optim.clip_grad_norm,
                                gradient_clip_algorithm="norm")  # fmt: skip
        optimizer.step()
        return norm

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        measure = self.health_step()
        self.toggle_optimizer(opt_d)
        for _ in range(self.optim.d_steps):
            d_terms = self.d_terms(batch)
            d_norm = self._update(opt_d, d_terms["d_loss"], measure)
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        samples: list[Tensor] = []
        hook = None
        if measure:  # catch G's output inside generator_terms, whatever the subclass does with it
            hook = self.generator.register_forward_hook(lambda _m, _i, out: samples.append(generated_samples(out)))
        try:
            g_terms = self.g_terms(batch)
        finally:
            if hook is not None:
                hook.remove()
        g_norm = self._update(opt_g, g_terms["g_loss"], measure)
        self.untoggle_optimizer(opt_g)

        self.gan_step += 1
        self.update_ema()
        terms = {**d_terms, **g_terms}
        if measure:
            terms.update(grad_norm_d=d_norm, grad_norm_g=g_norm)
            if samples and samples[-1] is not None:
                terms["diversity"] = batch_diversity(samples[-1])
        self.log_terms(terms, batch_size=self.batch_size_of(batch), show=measure)

    @torch.no_grad()
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """Samples for the validation batch, with the same noise for the same batch every time, and their real
        counterparts; the validation callback (``t2v/callbacks/validation.py``) scores them."""
        noise = torch.Generator().manual_seed(batch_idx)
        inputs = {k: v.to(self.device) for k, v in self.sampling_inputs(batch, noise).items()}
        generated = generated_samples(self.sample(inputs))
        return {"generated": generated, "real": self.real_samples(batch).to(generated)}

    def log_terms(self, terms: dict[str, Tensor], batch_size: int, show: bool = False) -> None:
        """Everything under ``train/`` with stable names, plus the GAN step as an x-axis; with ``show``, G's and D's
        losses also go to :attr:`progress`, the progress bar's numbers (``t2v/callbacks/progress.py``).

        Nothing is logged with Lightning's ``prog_bar``: Lightning copies such a value to the host after every batch
        (on a GPU, a wait for the step to finish), so the bar's numbers are read here, on the steps the loggers
        write. For the same reason the step's values stay in :attr:`step_terms`, on the device, for the callbacks
        that read every step's losses in batches (``t2v/callbacks/equilibrium.py``)."""
        self.step_terms = {f"train/{n}": v.detach().float() for n, v in terms.items() if v.numel() == 1}
        for name, value in self.step_terms.items():
            self.log(name, value, batch_size=batch_size)
        self.log("train/gan_step", self.gan_step.float(), batch_size=batch_size)
        if show:
            self.show({"g_loss": self.step_terms["train/g_loss"], "d_loss": self.step_terms["train/d_loss"]}, due=True)

    @staticmethod
    def batch_size_of(batch: dict[str, Any]) -> int:
        return len(batch["caption"])

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        o = self.optim
        opt_g = adam(self.generator_parameters(), lr=o.lr_g, betas=o.betas)
        opt_d = adam(self.discriminator_parameters(), lr=o.lr_d, betas=o.betas)
        return [opt_g, opt_d]


def upgrade_shared_hparams(hparams: dict[str, Any]) -> None:
    """The flat optimiser, EMA and loss-kind hyper-parameters of a checkpoint written before the options were
    grouped, moved in place into ``optim``, ``ema`` and ``losses.gan`` (both GANs' older layout)."""
    hparams["optim"] = {key: hparams.pop(key) for key in ("lr_g", "lr_d", "betas", "d_steps", "clip_grad_norm")
                        if key in hparams}  # fmt: skip
    hparams["ema"] = {new: hparams.pop(old) for old, new in (("ema_decay", "decay"), ("ema_start", "start"))
                      if old in hparams}  # fmt: skip
    hparams.setdefault("losses", {})["gan"] = hparams.pop("gan_loss", "bce")


def upgrade_text_parts(hparams: dict[str, Any]) -> list[str]:
    """The text parts an older checkpoint's G and D read, its ``text_parts``/``text_code`` popped in place: the named
    parts, else the siamese embedding, followed with ``text_code`` by the code behind it (the VAE code, and the word
    mean where the siamese stage had it)."""
    named, with_code = hparams.pop("text_parts", None), hparams.pop("text_code", False)
    word_mean = (hparams.get("text_encoder") or {}).get("word_mean", False)
    code = ["vae_code", *(["word_mean"] if word_mean else [])] if with_code else []
    return list(named) if named else ["embedding", *code]
