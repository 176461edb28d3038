"""Episode bookkeeping of the RLlib baselines: per-episode mean reward, from RLlib's chunks.

RLlib's own metrics only report windowed means, and a reduce=None list turned out to re-report
earlier episodes, so a callback sums each episode's chunks itself. Only the local runner's
(num_env_runners=0) episodes are logged; remote runners' are counted, not logged.
"""
from __future__ import annotations

# (mean reward per decision, decisions) of every episode RLlib's stock env runners finished in
# this process since the last `EpisodeBook.update`.
FINISHED_EPISODES: list[tuple[float, int]] = []


def baseline_callbacks():
    from ray.rllib.callbacks.callbacks import RLlibCallback

    class EpisodeDelay(RLlibCallback):
        """Per-episode mean reward per decision, summed over the chunks RLlib cuts an episode
        into: every `sample()` returns only the steps since the previous one, and
        `on_episode_end` sees the last chunk alone (a 30,000-decision dedgeai episode then
        looked like its last few hundred decisions, the most loaded ones)."""

        def __init__(self):
            super().__init__()
            self.open: dict[str, list[float]] = {}     # episode id -> [return, decisions]

        def on_sample_end(self, *, samples, **kwargs):
            for chunk in samples:
                total = self.open.setdefault(chunk.id_, [0.0, 0])
                total[0] += float(chunk.get_return())
                total[1] += len(chunk)
                if chunk.is_done:
                    episode_return, decisions = self.open.pop(chunk.id_)
                    FINISHED_EPISODES.append((episode_return / max(decisions, 1), decisions))

    return EpisodeDelay


def _lifetime_episodes(result: dict) -> int | None:
    runners = result.get("env_runners")
    value = runners.get("num_episodes_lifetime") if isinstance(runners, dict) else None
    return None if value is None else int(value)


class EpisodeBook:
    """Completed episodes in order, from our algorithms (exact) or RLlib's (via the callback)."""

    def __init__(self, algo, delay_is_reward: bool):
        self.algo, self.delay_is_reward = algo, delay_is_reward
        self.ours = hasattr(algo, "episodes")
        self.extra: list[dict] = []

    @property
    def episodes(self) -> list[dict]:
        return self.algo.episodes if self.ours else self.extra

    def update(self, result: dict) -> None:
        if self.ours:
            return
        values = list(FINISHED_EPISODES)
        FINISHED_EPISODES.clear()
        lifetime = _lifetime_episodes(result)
        if lifetime is not None:
            # episodes finished before a resume, or on remote runners: counted, value unknown
            for _ in range(lifetime - len(self.extra) - len(values)):
                self.extra.append({"episode": len(self.extra) + 1})
        for v, decisions in values:
            rec = {"episode": len(self.extra) + 1, "mean_reward": float(v), "decisions": int(decisions)}
            if self.delay_is_reward:
                rec["mean_delay_s"] = -float(v)
            self.extra.append(rec)
