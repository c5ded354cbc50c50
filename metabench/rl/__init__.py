"""Meta-RL building blocks: vectorised torch environments, rollouts, returns/GAE.

The contract the meta-RL algorithms are written against (rl2, maml-rl, mql, the classical rows)
------------------------------------------------------------------------------------------------
Tasks.  An RL suite (`metabench.suites.rl`, kind ``rl-discrete`` / ``rl-continuous``) hands out
tasks as an `RLTaskBatch`: ``params`` is a dict of tensors with a leading task dimension T
(bandits: ``probs`` (T, k); tabular MDPs: ``transitions`` (T, S, A, S), ``reward_means`` (T, S, A);
navigation: ``goal`` (T, 2)), plus ``reference`` = ``{"random": (T,), "oracle": (T,)}`` (the
expected per-trial score of the uniform-random and of the optimal policy, used for
``normalized_score``), JSON-able ``descriptors`` and ``task_ids``.  `suite.sample(split, T, gen)`
and `suite.fixed_tasks(split, n)` return these, exactly as for few-shot suites.

Environments.  ``env = suite.make_env(tasks, n_envs_per_task, generator=g)`` builds one
vectorised environment that holds B = T * n_envs_per_task parallel copies on the suite's device,
laid out task-major (copy b plays task b // n_envs_per_task; ``env.task_index`` (B,)).  Then::

    obs = env.reset()                              # (B, obs_dim) float32
    obs, reward, done, info = env.step(action)     # action: (B,) int64 if discrete,
                                                   #         (B, act_dim) float32 if continuous
                                                   # reward (B,) float32, done (B,) bool

One `step` advances every copy of every task at once (a handful of tensor ops, no Python loop
over environments).  A *trial* (RL²'s word) is ``episodes_per_trial`` episodes of exactly
``horizon`` steps on the same task; there is no early termination, so every copy is always at the
same step ``env.t`` of the trial and ``done`` is true for all copies together.  ``done`` marks the
last step of an episode; the environment then starts the next episode by itself (the returned
``obs`` is the first observation of the next episode; the episode's true last observation is
``info["final_obs"]``), and ``info["trial_done"]`` (a bool) marks
the last step of the trial, after which `step` starts a new trial on the same tasks.  ``reset()``
restarts the trial.  Randomness (reward noise, transitions) comes only from the generator given
to `make_env` (a generator on the env's device).

Spaces: ``env.obs_dim``, ``env.n_states`` (tabular MDP: observations are one-hot states, else
None), ``env.action_space`` = `ActionSpace` (``discrete``, ``n`` or ``dim``/``low``/``high``).
Actions outside the box are clipped by the environment (navigation), invalid discrete actions
raise.  ``env.episodes_per_trial``, ``env.horizon`` and ``env.trial_length`` give the structure.

Scoring.  Algorithms roll out, average the undiscounted return of each episode over the copies of
a task to get ``returns`` (T, n_episodes), and call ``suite.score(tasks, returns)``: it returns
the per-task metrics the engine records (bandits/MDPs: ``trial_return``, ``normalized_score``,
``regret`` / ``oracle_ratio``; navigation: ``return@k`` = return of the episode after k
adaptation steps (gradient learners) or k earlier episodes of the trial (recurrent learners),
``normalized_score`` of the primary metric).  ``suite.eval_trials`` is how many parallel trials
per test task the evaluation should average.

Determinism.  ``evaluate(tasks)`` must be a function of (meta-parameters, tasks) only: draw
evaluation randomness from `eval_generator(tasks, salt, device)`, which is seeded by the task ids
(so the state-dict round trip and repeated evaluations give identical numbers, and two
algorithms see the same reward noise stream on the same task).

Training.  The engine asks `algorithm.train_request().n_tasks` train tasks from the suite each
meta-step and passes the `RLTaskBatch` to `meta_train_step`; the algorithm builds its own
vectorised env with `suite.make_env` and rolls out whole trials with `rollout.run_trials`
(recurrent learners through `rollout.RecurrentAgent`; maml-rl, which adapts within a trial,
plays segments with its own loop, see `rollout`).

The machinery the learners share, each piece a small tested module (the learner files keep only
what makes each algorithm itself):

    core       task batches, action spaces, the `VecEnv` base class, `eval_generator`
    envs       the vectorised bandit, tabular-MDP and navigation environments
    rollout    `run_trials` (the one trial loop), `RecurrentAgent` (RL², MQL's context)
    returns    discounted returns and GAE (Schulman et al. 2016)
    ppo        PPO's clipped surrogate (Schulman et al. 2017): rl2, maml-rl with outer="ppo"
    trpo       conjugate gradient, natural step, line search (Schulman et al. 2015): maml-rl
    q_targets  double-DQN and TD3 targets, Polyak averaging: mql
    mdp        finite-horizon value iteration and policy evaluation: the suites, psrl

Nothing here imports from `metabench.suites` or `metabench.algorithms` (the suites build on it).
Gymnasium: every vectorised env family is also a single-environment Gymnasium env,
``metabench/Bandit-v0``, ``metabench/TabularMDP-v0``, ``metabench/Navigation2D-v0``
(`metabench.suites.gym_envs`, beside the suites they draw tasks from), registered when
`metabench` is imported if gymnasium is installed.
"""
from metabench.rl.core import ActionSpace, RLTaskBatch, VecEnv, eval_generator

__all__ = ["ActionSpace", "RLTaskBatch", "VecEnv", "eval_generator"]
