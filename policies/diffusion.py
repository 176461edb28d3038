"""The denoising diffusion actor of D2SAC (Du et al.) and LAD (Xu et al.), in plain PyTorch.

A small MLP denoiser eps(x_i, i, s) runs I reverse steps of a variance-preserving (VP) schedule
from x_I to x_0; the policy is pi(.|s) = softmax(scale * tanh(x_0)).

- D2SAC starts the chain from x_I ~ N(0, I) (the mean, 0, when acting greedily).
- LAD starts it from x_I = the historical action probability of the decision context.

Why `scale`: the D2SAC code clips x_0 to [-1, 1] before the softmax. Without the clip the first
logits are about +-12 and the policy is near-deterministic from the start (it never learns); with
it the best of 20 actions can never get more than e^2 / (e^2 + 19) = 28% probability, so the
entropy stays near 2.5 nats and the agent plateaus. Here tanh replaces the hard clip (the same
[-1, 1] range, but a clipped x_0 passes no gradient back through the chain, and on this scenario
most of it was clipped), and a learned logit scale (init 1.5, bounded to [1, `max_logit_scale`])
lets the policy sharpen when the critic says so.

`model.network = "per-action"` (ours) replaces the flat MLPs (denoiser, critics, plain actor) by
networks that score every action with one set of weights from that action's own observation
columns (`PerActionNet`). Otherwise every layer is an `EnsembleLinear`: with `n_agents` = 1 it
is a plain linear layer (one shared policy); with n_agents = E it holds E independent weight
sets (the faithful multi-agent form: one independent agent per base station, no parameter
sharing) evaluated in one batched matmul.
"""
from __future__ import annotations

import math
from itertools import islice

import torch
import torch.nn.functional as F
from torch import nn


def _pick(y: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
    """[B, E, out] (every agent's output for every row) -> [B, out] (each row's own agent).

    Acting batches mix agents row by row; computing all E agents for the B rows in one batched
    matmul and picking is ~10x faster here than gathering a [B, in, out] weight copy per layer."""
    return y[torch.arange(y.shape[0]), agent]


def _all_agents(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x [B, in] through every agent's weights w [E, in, out] -> [B, E, out], as ONE matmul
    (a broadcast bmm runs E small GEMMs, 5x slower here)."""
    E, d_in, d_out = w.shape
    return (x @ w.permute(1, 0, 2).reshape(d_in, E * d_out)).view(-1, E, d_out)


class EnsembleLinear(nn.Module):
    """E independent linear layers. Input [B, in] with `agent` [B], or [E, m, in] grouped by agent."""

    def __init__(self, n_agents: int, d_in: int, d_out: int):
        super().__init__()
        self.n_agents = n_agents
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_agents, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_agents, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_agents == 1:
            return x @ self.weight[0] + self.bias[0, 0]
        if x.dim() == 3:                       # [E, m, in]: rows grouped by agent (training)
            return torch.baddbmm(self.bias, x, self.weight)
        return _pick(_all_agents(x, self.weight), agent) + self.bias[agent, 0]


    def project(self, x: torch.Tensor, agent: torch.Tensor | None, start: int, stop: int | None,
                bias: bool = False) -> torch.Tensor:
        """The contribution of input columns [start, stop) only: lets a caller reuse a constant part."""
        w = self.weight[:, start:stop]
        if self.n_agents == 1:
            y, b = x @ w[0], self.bias[0, 0]
        elif x.dim() == 3:
            y, b = torch.bmm(x, w), self.bias
        else:
            y, b = _pick(_all_agents(x, w), agent), self.bias[agent, 0]
        return y + b if bias else y


class EnsembleMLP(nn.Module):
    def __init__(self, n_agents: int, d_in: int, hidden: int, d_out: int, layers: int = 2,
                 activation: type[nn.Module] = nn.Mish):
        super().__init__()
        dims = [d_in] + [hidden] * layers
        self.hidden = nn.ModuleList(EnsembleLinear(n_agents, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = EnsembleLinear(n_agents, dims[-1], d_out)
        self.act = activation()

    def forward(self, x: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.hidden:
            x = self.act(layer(x, agent))
        return self.out(x, agent)


class FlatDenoiser(EnsembleMLP):
    """eps(x_i, i, s) = MLP([x_i, emb(i), s]): D2SAC's denoiser, one weight set per agent."""

    def state_part(self, obs: torch.Tensor, agent: torch.Tensor | None) -> torch.Tensor:
        first = self.hidden[0]       # its input: [x_i (A), emb(i) (T), s (d)]
        return first.project(obs, agent, first.weight.shape[1] - obs.shape[-1], None, bias=True)

    def eps(self, x: torch.Tensor, t_emb: torch.Tensor, s_part: torch.Tensor,
            agent: torch.Tensor | None) -> torch.Tensor:
        first, A, T = self.hidden[0], x.shape[-1], t_emb.shape[-1]
        t = t_emb.expand(*x.shape[:-1], T)
        h = self.act(first.project(x, agent, 0, A) + first.project(t, agent, A, A + T) + s_part)
        for layer in islice(self.hidden, 1, None):   # (slicing a ModuleList builds a new one)
            h = self.act(layer(h, agent))
        return self.out(h, agent)


class PerActionNet(nn.Module):
    """One output per action, every action scored by the same weights from its own columns.

    out[..., a] = MLP(W f_a(s) + b_a + C context(s)): f_a are the observation's per-action
    columns of action a (`ObsField.per_action`: e.g. server a's queue and placed work), b_a a
    learned per-action offset (what the columns do not say: server a's capacity, its link),
    context(s) a small summary of the whole state (the task). A flat MLP must learn the same
    function of a server's queue 20 times, once per output; this one learns it once, so a rule
    like greedy (argmin over servers of a function of each server's own state) is easy to fit.
    One weight set only (the shared form)."""

    def __init__(self, obs_dim: int, columns: list[list[int]], hidden: int, context: int = 32,
                 activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        cols = torch.as_tensor(columns, dtype=torch.long).T          # [A, k]
        if cols.dim() != 2 or cols.numel() == 0:
            raise ValueError("a per-action network needs per-action observation columns")
        self.register_buffer("cols", cols, persistent=False)
        self.act = activation()
        self.context = nn.Sequential(nn.Linear(obs_dim, hidden), activation(), nn.Linear(hidden, context),
                                     activation())
        self.own = nn.Linear(cols.shape[1], hidden)
        self.action_offset = nn.Parameter(torch.zeros(cols.shape[0], hidden))
        self.from_context = nn.Linear(context, hidden, bias=False)
        self.hidden = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def state_part(self, obs: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        """The first layer's pre-activation [..., A, hidden]."""
        return self.own(obs[..., self.cols]) + self.action_offset + self.from_context(self.context(obs)).unsqueeze(-2)

    def head(self, pre: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.hidden(self.act(pre)))).squeeze(-1)

    def forward(self, obs: torch.Tensor, agent: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.state_part(obs))


class PerActionDenoiser(PerActionNet):
    """eps(x_i, i, s)[a] from x_i[a], emb(i) and action a's part of the state."""

    def __init__(self, obs_dim: int, columns: list[list[int]], hidden: int, t_dim: int,
                 activation: type[nn.Module] = nn.SiLU):
        super().__init__(obs_dim, columns, hidden, activation=activation)
        self.from_x = nn.Parameter(torch.empty(hidden).uniform_(-1.0, 1.0))
        self.from_t = nn.Linear(t_dim, hidden, bias=False)

    def eps(self, x: torch.Tensor, t_emb: torch.Tensor, s_part: torch.Tensor,
            agent: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(s_part + x.unsqueeze(-1) * self.from_x + self.from_t(t_emb))


def action_scores(n_agents: int, obs_dim: int, hidden: int, n_actions: int,
                  per_action_columns: list[list[int]] | None, activation: type[nn.Module] = nn.ReLU) -> nn.Module:
    """s -> one score per action (Q values, logits): a flat MLP (one per agent), or a
    `PerActionNet` when per-action columns are given."""
    if per_action_columns is None:
        return EnsembleMLP(n_agents, obs_dim, hidden, n_actions, activation=activation)
    if n_agents != 1:
        raise ValueError("a per-action network has one weight set: the shared form only")
    return PerActionNet(obs_dim, per_action_columns, hidden, activation=activation)


def vp_schedule(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> torch.Tensor:
    """betas of the discretised VP SDE (the `vp_beta_schedule` of the D2SAC / Diffusion-QL code)."""
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    alpha = torch.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / steps ** 2)
    return (1.0 - alpha).float()


def timestep_embedding(i: torch.Tensor, dim: int = 16) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    angles = i.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DiffusionActor(nn.Module):
    """pi(.|s) from I reverse steps of eps(x_i, i, s). `forward` returns logits [B, A]."""

    def __init__(self, obs_dim: int, n_actions: int, *, n_agents: int = 1, hidden: int = 128,
                 steps: int = 5, beta_min: float = 0.1, beta_max: float = 10.0,
                 max_logit_scale: float = 10.0, learn_logit_scale: bool = True, t_dim: int = 16,
                 activation: str = "silu", per_action_columns: list[list[int]] | None = None):
        super().__init__()
        self.n_actions, self.steps, self.t_dim = n_actions, steps, t_dim
        # D2SAC's denoiser uses Mish; SiLU is the same shape at a tenth of the CPU cost here
        # (1024 x 128: 0.2 vs 1.9 ms), which decides whether batch-1024 decisions fit in 10 ms.
        act = {"silu": nn.SiLU, "mish": nn.Mish, "relu": nn.ReLU}[activation]
        if per_action_columns is None:
            self.eps_model = FlatDenoiser(n_agents, n_actions + t_dim + obs_dim, hidden, n_actions, activation=act)
        elif n_agents == 1:
            self.eps_model = PerActionDenoiser(obs_dim, per_action_columns, hidden, t_dim, activation=act)
        else:
            raise ValueError("a per-action denoiser has one weight set: the shared form only")
        betas = vp_schedule(steps, beta_min, beta_max)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1), abar[:-1]])
        # x_0 from (x_i, eps), and the posterior q(x_{i-1} | x_i, x_0): Diffusion-QL / D2SAC's form.
        self.register_buffer("recip_sqrt_abar", (1.0 / abar).sqrt())
        self.register_buffer("recipm1_sqrt_abar", (1.0 / abar - 1.0).sqrt())
        self.register_buffer("post_c0", betas * abar_prev.sqrt() / (1.0 - abar))
        self.register_buffer("post_ct", (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar))
        self.register_buffer("post_std", (betas * (1.0 - abar_prev) / (1.0 - abar)).clamp(min=1e-20).sqrt())
        self.register_buffer("t_emb", torch.stack([timestep_embedding(torch.tensor(i), t_dim)
                                                   for i in range(steps)]))
        self.max_logit_scale = max_logit_scale
        # The logit scale per agent, 1 + (max - 1) * sigmoid(raw): smooth and bounded, starts at
        # 1.5 when learned (a clamp would stop its gradient for good once it touched a bound).
        init = 0.5 / (max_logit_scale - 1.0) if learn_logit_scale else 1e-6
        self.raw_logit_scale = nn.Parameter(torch.full((n_agents,), math.log(init / (1 - init))),
                                            requires_grad=learn_logit_scale)

    def forward(self, obs: torch.Tensor, x: torch.Tensor, agent: torch.Tensor | None = None,
                noise: bool = True) -> torch.Tensor:
        """obs [B, d] (or [E, m, d]); x = x_I, same leading shape with A columns; -> logits."""
        net = self.eps_model
        # eps(x_i, i, s): the state's part of the first layer is the same at every step; once.
        s_part = net.state_part(obs, agent)
        for i in reversed(range(self.steps)):
            eps = net.eps(x, self.t_emb[i], s_part, agent)
            # Predicted x_0, squashed to [-1, 1] (D2SAC clips; tanh keeps the gradient alive).
            x0 = torch.tanh(self.recip_sqrt_abar[i] * x - self.recipm1_sqrt_abar[i] * eps)
            x = self.post_c0[i] * x0 + self.post_ct[i] * x       # posterior mean (= x0 at i = 0)
            if noise and i > 0:
                x = x + self.post_std[i] * torch.randn_like(x)
        return self.scale(agent, x.dim()) * x

    def logit_scale(self) -> torch.Tensor:
        return 1.0 + (self.max_logit_scale - 1.0) * torch.sigmoid(self.raw_logit_scale)

    def scale(self, agent: torch.Tensor | None, ndim: int) -> torch.Tensor:
        s = self.logit_scale()
        if s.numel() == 1:
            return s
        return s[agent, None] if ndim == 2 else s[:, None, None]


class MLPActor(nn.Module):
    """The plain SAC actor (logits = MLP(s)), same interface as DiffusionActor (x is ignored)."""

    def __init__(self, obs_dim: int, n_actions: int, *, n_agents: int = 1, hidden: int = 128,
                 per_action_columns: list[list[int]] | None = None, **_):
        super().__init__()
        self.net = action_scores(n_agents, obs_dim, hidden, n_actions, per_action_columns)
        self.n_actions, self.steps = n_actions, 0

    def forward(self, obs, x=None, agent=None, noise: bool = True) -> torch.Tensor:
        return self.net(obs, agent)


def per_action_columns(cfg: dict) -> list[list[int]] | None:
    """The observation columns a per-action network reads, or None for flat networks."""
    if cfg.get("network", "flat") == "flat":
        return None
    if not cfg.get("per_action_columns"):
        raise ValueError("model.network 'per-action' needs the layout's per_action_columns")
    return cfg["per_action_columns"]


def build_actor(cfg: dict, obs_dim: int, n_actions: int) -> nn.Module:
    """The actor of a model config (the RLModule's, and an artifact's loaded without Ray)."""
    cls = DiffusionActor if cfg["actor"] == "diffusion" else MLPActor
    return cls(obs_dim, n_actions, n_agents=int(cfg["n_agents"]), hidden=cfg["hidden"],
               steps=cfg["diffusion_steps"], beta_min=cfg["beta_min"], beta_max=cfg["beta_max"],
               max_logit_scale=cfg["max_logit_scale"], learn_logit_scale=cfg["learn_logit_scale"],
               activation=cfg.get("activation", "silu"), per_action_columns=per_action_columns(cfg))


def policy_probs(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, log-probabilities) of the categorical policy of these logits."""
    log_p = F.log_softmax(logits, dim=-1)
    return log_p.exp(), log_p


def scaled_features(obs: torch.Tensor, obs_scale: torch.Tensor, log1p: bool) -> torch.Tensor:
    """What every network reads: obs / the layout's typical scale, then log(1 + x) (queues grow
    without bound under overload)."""
    s = obs / obs_scale
    return torch.log1p(s.clamp(min=0.0)) if log1p else s


def chain_start(cfg: dict, shape: tuple, prior: torch.Tensor | None, noise: bool) -> torch.Tensor:
    """x_I of the chain: LAD from the historical probability p of the context; D2SAC from N(0, I)
    (its mean, 0, when acting greedily)."""
    if cfg["start"] == "prior":
        if prior is None:
            raise ValueError("a LAD actor needs the historical action probability of the context (`prior`)")
        return prior_latent(prior, cfg)
    return torch.randn(shape) if noise else torch.zeros(shape)


def acting_logits(actor: nn.Module, cfg: dict, obs_scale: torch.Tensor, obs: torch.Tensor,
                  agent: torch.Tensor | None, prior: torch.Tensor | None, noise: bool) -> torch.Tensor:
    """The actor's logits for raw observations: the one inference path of the RLModule (training,
    exploration) and of a loaded policy artifact (evaluation, serving)."""
    s = scaled_features(obs, obs_scale, cfg["obs_log1p"])
    return actor(s, chain_start(cfg, (*s.shape[:-1], actor.n_actions), prior, noise), agent, noise=noise)


def prior_latent(prior: torch.Tensor, cfg: dict) -> torch.Tensor:
    """LAD's chain start x_I from the historical action probability p of the decision context.

    `raw` (LAD-TS): x_I = p. `centered`: prior_scale * (A p - 1) / (A - 1), so the uniform
    probability starts at 0 (D2SAC's greedy start) and a one-hot one at prior_scale."""
    if cfg.get("prior_map", "raw") == "raw":
        return cfg.get("prior_scale", 1.0) * prior
    n = prior.shape[-1]
    return cfg.get("prior_scale", 1.0) * (n * prior - 1.0) / (n - 1)
