"""exercises.py -- coursework mode: stubs made from nets.py/algos.py, graders made from the tests, find-the-bug
draws from the mutation harness (bench/mutate.py).

    python minipg.py --exercise list                       # the exercises, in build-up order, with their notes
    python minipg.py --exercise gae --out ex/gae           # one exercise folder; then: cd ex/gae && python grade.py
    python minipg.py --exercise bug --seed 3 --out ex/bug  # find the bug: one planted, nowhere said where
    python minipg.py --exercise reveal --seed 3            # the diff of bug 3, from this project
    python minipg.py --exercise set --out course [--only gae,cg]   # teacher: course/students/ and course/solutions/
    python minipg.py --exercise list --markdown            # the list as the table in docs/exercises.md
(`python exercises.py ...` does the same.)

An exercise folder is the project with one function's body taken out: its signature, docstring and equation
comments stay, and it raises NotImplementedError. Beside it: the project's tests, a README for the student and
grade.py, which runs the tests that prove that function and prints one line per claim, PASS or FAIL, in the words of
the note. Nothing here duplicates the maths or the tests: the stubs are cut from the project's files with `ast`,
the claims are the project's own tests, the wrong answers and the bugs are bench/mutate.py's mutants by name (or an
exact replacement written in the table). EXERCISES and BUGS below are the only tables; test_exercises.py fails,
naming the entry, when a function, a test or a mutant that an entry names no longer exists.

This file imports no other module of the project (it reads their text), and only the standard library at the top.
"""
import argparse
import difflib
import importlib.util
import json
import os
import pprint
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))  # the project: the files an exercise is cut from
NOTES_DIR = os.path.join(HERE, "..", "shared", "seeds")  # the lecture notes, where the repository keeps them
NOTES = {  # note number -> (file, what it is), as shared/seeds/README.md lists them
    "000": ("000_773700de092dfd0c.txt", "an introduction after OpenAI Spinning Up (English)"),
    "001": ("001_eacefcd20a77a4bc.txt", "policy gradient as policy iteration; KL penalty, natural gradient (Chinese)"),
    "002": ("002_a3a67a6c254ab4a3.txt", "the policy gradient, baselines and A2C (English)"),
    "003": ("003_ce84789745f945eb.txt", "CS285-style lecture notes (Chinese)"),
}
TESTS = ("test_minipg.py", "test_updates.py")  # the proofs a folder carries (they import numpy, pytest, nets, algos)
NOT_PRODUCT = ("exercises.py", "conftest.py", "grade.py")  # root-level .py files that a folder does not copy


# ---------------------------------------------------------------------------------------------------------------
# The exercises, in build-up order: each needs only the ones before it (the set's folders rely on that).
#   file, funcs  the function(s) whose bodies the student writes (qualified names: "Categorical.dlogp")
#   note         the note and section to read first
#   claims       (test, claim): a pytest node id, or one with `*` for any text ("...wrt_z[*-clip]"), or a test
#                name without [...] for all its cases; the claim is what passing it proves, in the note's words
#   wrong        plausible wrong answers that must fail the grader: bench/mutate.py mutant names (inside these
#                functions), or (what, old, new): an exact replacement inside the function's text
#   train        the minipg.py flags to train with once the grader passes
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exercise:
    name: str
    file: str
    funcs: tuple
    note: str
    claims: tuple
    wrong: tuple
    train: str


MINIPG, UPDATES = "test_minipg.py::", "test_updates.py::"

EXERCISES = (
    Exercise(
        "categorical-log-prob", "nets.py", ("Categorical.log_prob",), "000 §Policies (categorical)",
        claims=(
            (MINIPG + "test_sampling_mean_neg_log_prob_is_entropy_and_mean_log_ratio_is_kl[categorical]",
             "over 200 000 sampled actions, the mean of −log π(a|s) is the entropy H and the mean of "
             "log π_old(a|s) − log π(a|s) is KL(π_old‖π) (within 4 standard errors)"),
            (MINIPG + "test_the_deterministic_action_is_the_mode_of_pi[categorical]",
             "no action is more probable than the greedy one: log π(mode|s) = max_a log π(a|s)"),
        ),
        wrong=("categorical-log-prob-wrong-action",
               ("z_a, without − log Σ_j exp z_j", "_log_softmax(z)[np.arange(len(a)), a]", "z[np.arange(len(a)), a]"),
               ("π(a|s), not its log", "_log_softmax(z)[np.arange(len(a)), a]", "_softmax(z)[np.arange(len(a)), a]")),
        train="--algo ppo"),
    Exercise(
        "categorical-dlogp", "nets.py", ("Categorical.dlogp",), "000 §Policies (categorical)",
        claims=(
            (MINIPG + "test_head_gradients_wrt_z_match_finite_differences[categorical-log_prob]",
             "d log π(a|s)/dz = onehot(a) − p matches central finite differences of log π"),
            (MINIPG + "test_categorical_log_prob_entropy_and_kl_are_exact_for_logits_a_thousand_apart",
             "log π, H, KL and d log π/dz stay finite and exact for logits a thousand apart (log-sum-exp)"),
        ),
        wrong=("categorical-dlogp-sign", "categorical-dlogp-onehot-off-by-one",
               ("the softmax from exp(z) / Σ exp(z), without the max shift", "g = -_softmax(z)  # (N, A)",
                "g = -np.exp(z) / np.exp(z).sum(1, keepdims=True)  # (N, A)")),
        train="--algo ppo"),
    Exercise(
        "gaussian-log-prob", "nets.py", ("DiagGaussian.log_prob",), "000 §Policies (diagonal Gaussian); 003 §2.5",
        claims=(
            (MINIPG + "test_sampling_mean_neg_log_prob_is_entropy_and_mean_log_ratio_is_kl[gaussian]",
             "over 200 000 sampled actions, the mean of −log π(a|s) is the entropy H and the mean of "
             "log π_old(a|s) − log π(a|s) is KL(π_old‖π) (within 4 standard errors)"),
            (MINIPG + "test_the_deterministic_action_is_the_mode_of_pi[gaussian]",
             "at a = μ the log-density is its peak, −Σ_k log σ_k − A/2 log 2π, and no sample is more probable"),
        ),
        wrong=("gaussian-log-prob-const-drops-A", "gaussian-log-prob-drops-log-std", "gaussian-log-prob-sigma-sign"),
        train="--algo ppo --env Pendulum-v1 --preset pendulum"),
    Exercise(
        "gaussian-dlogp", "nets.py", ("DiagGaussian.dlogp",), "000 §Policies (diagonal Gaussian); 003 §2.5",
        claims=(
            (MINIPG + "test_head_gradients_wrt_z_match_finite_differences[gaussian-log_prob]",
             "d log π/dμ = u/σ and d log π/d log σ = u² − 1, u = (a − μ)/σ, match central finite differences"),
        ),
        wrong=("gaussian-dlogp-mu-drops-factor", "gaussian-dlogp-log-std-drops-1",
               ("003 §2.5's −½ Σ⁻¹(μ − a) for the mean", "np.concatenate([u / sigma, u**2 - 1], 1)",
                "np.concatenate([0.5 * u / sigma, u**2 - 1], 1)")),
        train="--algo ppo --env Pendulum-v1 --preset pendulum"),
    Exercise(
        "mlp-backward", "nets.py", ("MLP.deltas", "MLP.backward"), "003 §7.1 (the gradient autograd would take)",
        claims=(
            (MINIPG + "test_mlp_backward_is_the_gradient_of_u_dot_y_wrt_theta_and_x",
             "backward(u) is the gradient of Σ_i u_i·y_i with respect to θ and to x (central finite differences; "
             "tanh and relu, 1 to 3 hidden layers)"),
            (MINIPG + "test_per_sample_grads_equal_a_plain_loop_for_three_hidden_layers",
             "the per-sample gradients made from its deltas equal backprop written as a loop, one sample at a time"),
            (MINIPG + "test_policy_backward_carries_head_gradients_to_theta",
             "carried through the policy, d log π/dz, dH/dz and dKL/dz are the finite-difference gradients in θ"),
        ),
        wrong=("backward-db-skips-sample-0", "deltas-df-wrong-layer",
               ("d_{l-1} = d_l W_l (no transpose)", "d = (d @ self.W[l].T) * self.df(hs[l])",
                "d = (d @ self.W[l]) * self.df(hs[l])")),
        train="--algo ppo"),
    Exercise(
        "mlp-jvp", "nets.py", ("MLP.jvp",), "001 §Method 2 (F v needs J v)",
        claims=(
            (MINIPG + "test_mlp_jvp_is_the_directional_derivative_of_forward",
             "jvp(v) = J v is the directional derivative (y(θ + εv) − y(θ − εv)) / 2ε of forward "
             "(tanh and relu, 1 to 3 hidden layers)"),
        ),
        wrong=("jvp-drops-dh-term", "jvp-drops-db", "jvp-drops-df"),
        train="--algo trpo"),
    Exercise(
        "adam-step", "nets.py", ("Adam.step",), "003 §7 (Adam, for gradients this noisy)",
        claims=(
            (MINIPG + "test_adam_is_kingma_and_ba_with_bias_correction",
             "five steps equal Kingma & Ba: m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², "
             "θ ← θ − α m̂/(√v̂ + ε), with m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)"),
            (MINIPG + "test_optimisers_keep_float32[*-Adam]",
             "float32 parameters and moments stay float32, whatever the gradient's dtype"),
        ),
        wrong=("adam-no-bias-correction", "adam-eps-inside-sqrt", "adam-betas-swapped"),
        train="--algo ppo"),
    Exercise(
        "discount-cumsum", "algos.py", ("discount_cumsum",), "000 §Don't Let the Past Distract You; 003 §5.2",
        claims=(
            (MINIPG + "test_discount_cumsum_kernel_equals_py_func_equals_the_definition",
             "R̂_t = Σ_{t'≥t} γ^(t'−t) r_t' within each episode, compiled and plain (.py_func) alike, "
             "for γ = 0.99, 0.9 and 1"),
        ),
        wrong=("discount-cumsum-reset-after-reward", "discount-cumsum-no-gamma",
               ("never reset at an episode's end",
                "            if done[t, e]:\n                running[e] = 0.0\n", "")),
        train="--algo reinforce"),
    Exercise(
        "gae", "algos.py", ("gae",), "000 §Other Forms of the Policy Gradient",
        claims=(
            (MINIPG + "test_gae_kernel_equals_py_func_equals_the_definition",
             "Â_t = Σ_l (γλ)^l δ_{t+l} within each episode, compiled and plain (.py_func) alike, for four (γ, λ)"),
            (MINIPG + "test_gae_with_lambda_0_is_the_td_error",
             "GAE with λ = 0 is the TD error δ_t = r_t + γ V(s_{t+1}) − V(s_t)"),
            (MINIPG + "test_gae_with_lambda_1_is_the_bootstrapped_discounted_return_minus_v",
             "GAE with λ = 1 is the discounted return minus V (bootstrapped where the rollout is cut)"),
            (MINIPG + "test_gae_bootstraps_from_final_val_at_truncations_only",
             "a time-limit cut bootstraps from V(final obs) (dÂ_t/dV_final = γ); a termination does not"),
        ),
        wrong=("gae-drops-lambda", "gae-truncation-not-bootstrapped", "gae-next-val-off-by-one"),
        train="--algo ppo"),
    Exercise(
        "policy-gradient", "algos.py", ("policy_gradient",), "000 §Other Forms of the Policy Gradient; 003 §7.1",
        claims=(
            (UPDATES + "test_vpg_update_equals_one_ascent_step_on_the_gae_gradient_then_the_critic_regression",
             "one VPG update, ĝ = 1/N Σ_t ∇log π(a_t|s_t) Â_t (with and without the entropy bonus), gives the θ "
             "and φ of the reference to 1e-10"),
            (UPDATES + "test_a2c_update_equals_one_clipped_joint_step_on_the_n_step_advantage",
             "one A2C update on the n-step advantage gives the θ and φ of the reference to 1e-10"),
            (UPDATES + "test_normalised_advantages_rescale_000s_gradient_and_subtract_a_batch_baseline",
             "with normalised advantages, ĝ is 000 §VPG's minus a batch baseline, over std(Â) + 1e-8"),
        ),
        wrong=("policy-gradient-drops-A", "policy-gradient-entropy-sign", "policy-gradient-drops-1/N"),
        train="--algo vpg"),
    Exercise(
        "pg-estimate", "algos.py", ("pg_estimate",), "003 §5.3.4; 000 §Baselines in Policy Gradients",
        claims=(
            (MINIPG + "test_optimal_baseline_estimate_equals_the_per_parameter_formula",
             "with the optimal baseline, ĝ = 1/N_τ Σ_τ g(τ)(R(τ) − b) with b_k = Σ_τ g_k(τ)² R(τ) / Σ_τ g_k(τ)², "
             "one b per parameter (003 §5.3.4)"),
            (MINIPG + "test_optimal_baseline_is_finite_for_a_parameter_with_no_gradient_in_float32",
             "a parameter with no gradient gets b = 0, not 0/0 = NaN, and float32 stays float32"),
            (UPDATES + "test_reinforce_update_equals_the_monte_carlo_gradient_on_whole_episodes",
             "one REINFORCE update, with Φ_t = R(τ) or the reward-to-go and each baseline (none, mean, optimal, "
             "V), gives the θ of the reference to 1e-10"),
            (UPDATES + "test_the_mean_baseline_averages_over_steps_where_003_5_3_1_averages_over_episodes",
             "the mean baseline is the mean of Φ_t over the batch's steps (003 §5.3.1's mean over episodes when "
             "they are equally long)"),
            (UPDATES + "test_with_reward_to_go_the_codes_optimal_baseline_has_less_variance_than_003_5_3_4s",
             "with the reward-to-go, b_k = E[g_k h_k] / E[g_k²] has less variance than 003 §5.3.4's E[g² r] / E[g²], "
             "which it equals for Φ_t = R(τ)"),
        ),
        wrong=("pg-estimate-optimal-b-swapped", "pg-estimate-mean-baseline-dropped", "pg-estimate-v-baseline-sign"),
        train="--algo reinforce --baseline optimal"),
    Exercise(
        "fisher-vector-product", "algos.py", ("fisher_vector_product",), "001 §Method 2",
        claims=(
            (MINIPG + "test_fvp_is_the_hessian_of_mean_kl_at_theta_old_times_v",
             "F v is the Hessian of the mean KL(π_old‖π_θ) at θ_old times v (finite differences of its gradient)"),
            (MINIPG + "test_fvp_damping_adds_damping_times_v", "damping adds damping · v"),
            (MINIPG + "test_explicit_fisher_is_symmetric_positive_semidefinite",
             "F, built column by column from F e_j, is symmetric and positive semi-definite"),
            (MINIPG + "test_categorical_fisher_is_the_expected_outer_product_of_scores",
             "for a categorical policy F = E_a[∇log π ∇log πᵀ] (001 §Method 2), the expectation a sum over actions"),
        ),
        wrong=("fvp-drops-1/N", "fvp-damping-sign", "fvp-drops-metric"),
        train="--algo trpo"),
    Exercise(
        "cg", "algos.py", ("cg",), "000 §Proximal Policy Optimization (TRPO: \"solved using the conjugate gradient "
        "algorithm\")",
        claims=(
            (MINIPG + "test_cg_solves_a_random_spd_system",
             "CG solves A x = b for a random symmetric positive definite A (condition number 100) to 1e-12"),
            (MINIPG + "test_cg_with_the_fvp_solves_the_damped_fisher_system",
             "with F v products alone, CG solves (F + damping I) x = g"),
        ),
        wrong=("cg-beta-inverted", "cg-steepest-descent", "cg-tol-inverted"),
        train="--algo trpo"),
    Exercise(
        "line-search", "algos.py", ("line_search",), "000 §Proximal Policy Optimization (TRPO)",
        claims=(
            (UPDATES + "test_line_search_rejects_a_step_whose_kl_is_too_big",
             "a step whose KL is above δ is shrunk: the first θ_old + 0.8^j step with KL ≤ δ is taken (j = 2)"),
            (UPDATES + "test_line_search_rejects_a_step_whose_surrogate_does_not_improve",
             "a step that does not improve the surrogate is shrunk until it does (j = 3)"),
            (UPDATES + "test_line_search_returns_theta_old_when_no_step_is_accepted",
             "when no step is accepted, θ_old comes back, with j = iters"),
        ),
        wrong=("line-search-drops-surrogate-clause", "line-search-shrink-off-by-one", "line-search-failure-keeps-last"),
        train="--algo trpo"),
    Exercise(
        "trpo-surrogate", "algos.py", ("trpo_surrogate",), "000 §Proximal Policy Optimization (TRPO); 003 §6",
        claims=(
            (MINIPG + "test_each_policy_objective_is_the_notes_formula_and_dl_dz_its_gradient[*-trpo-surrogate]",
             "L = 1/N Σ_t r_t(θ) A_t with r_t = π_θ(a_t|s_t) / π_old(a_t|s_t), and dL/dz matches central finite "
             "differences of it"),
            (MINIPG + "test_each_policy_objective_gradient_through_the_policy_wrt_theta[*-trpo-surrogate]",
             "carried through the policy, dL/dz is the finite-difference gradient in θ"),
            (UPDATES + "test_the_trpo_surrogate_drops_001s_gamma_t_weights",
             "its gradient at θ_old is the unweighted mean of ∇log π A_t, without 001's γ^t weights"),
        ),
        wrong=("trpo-ratio-inverted",
               ("dL/dz without r_t (right at θ_old only)", "(ratio * A)[:, None] * head.dlogp(z, act) / len(A)",
                "A[:, None] * head.dlogp(z, act) / len(A)"),
               ("L summed, not averaged", "L = float(np.mean(ratio * A))", "L = float(np.sum(ratio * A))")),
        train="--algo trpo"),
    Exercise(
        "natural-gradient-step", "algos.py", ("update_trpo",), "001 §Method 2; 000 §Proximal Policy Optimization",
        claims=(
            (MINIPG + "test_npg_step_has_quadratic_kl_equal_to_delta",
             "the natural-gradient step θ ← θ + √(2δ / gᵀF⁻¹g) F⁻¹g has ½ Δθᵀ F Δθ = δ"),
            (UPDATES + "test_npg_update_equals_the_natural_gradient_step_on_the_explicit_fisher_matrix",
             "one NPG update equals that step with F⁻¹g from CG on the explicit F + damping I, to 1e-10"),
            (UPDATES + "test_the_natural_gradient_step_is_001s_times_sqrt_gx_over_xFx_and_meets_the_kl_bound_exactly",
             "with x from CG, the step is 001's √(2δ / gᵀx) x times √(gᵀx / xᵀFx) ≥ 1, and meets ½ Δθᵀ F Δθ = δ "
             "exactly"),
            (UPDATES + "test_trpo_update_equals_the_backtracking_line_search_of_the_notes",
             "one TRPO update equals the backtracking line search of the notes on that step, to 1e-10"),
            (MINIPG + "test_trpo_accepted_step_has_mean_kl_at_most_delta",
             "TRPO's accepted step keeps the mean KL(π_old‖π) ≤ δ, and is the NPG step times 0.8^backtracks"),
        ),
        wrong=("trpo-step-drops-2", "trpo-cg-undamped", "trpo-kl-swapped"),
        train="--algo trpo"),
    Exercise(
        "ppo-clip-objective", "algos.py", ("ppo_clip_objective",), "000 §Proximal Policy Optimization (PPO-Clip)",
        claims=(
            (MINIPG + "test_each_policy_objective_is_the_notes_formula_and_dl_dz_its_gradient[*-ppo-clip]",
             "L = 1/n Σ_t min(r_t A_t, clip(r_t, 1−ε, 1+ε) A_t), and dL/dz matches central finite differences of "
             "it, with some terms clipped and some not"),
            (MINIPG + "test_each_policy_objective_gradient_through_the_policy_wrt_theta[*-ppo-clip]",
             "carried through the policy, dL/dz is the finite-difference gradient in θ"),
            (UPDATES + "test_ppo_clip_update_equals_the_per_sample_min_of_the_notes",
             "one PPO-Clip update (epochs of shuffled minibatches) gives the θ and φ of the reference to 1e-10"),
        ),
        wrong=("dz-clip-min-inverted", "dz-clip-bounds-swapped", "ppo-loss-pi-max"),
        train="--algo ppo"),
    Exercise(
        "ppo-penalty-objective", "algos.py", ("ppo_penalty_objective",),
        "000 §Proximal Policy Optimization (PPO-Penalty); 001 §Method 1",
        claims=(
            (MINIPG + "test_each_policy_objective_is_the_notes_formula_and_dl_dz_its_gradient[*-ppo-penalty]",
             "L = 1/n Σ_t [r_t A_t − β KL(π_old‖π)(s_t)], and dL/dz matches central finite differences of it"),
            (MINIPG + "test_each_policy_objective_gradient_through_the_policy_wrt_theta[*-ppo-penalty]",
             "carried through the policy, dL/dz is the finite-difference gradient in θ"),
        ),
        wrong=("dz-penalty-kl-sign", "dz-penalty-dkl-swapped",
               ("L rewards the KL: + β KL", "L = float(np.mean(ratio * A - beta * head.kl(z_old, z)))",
                "L = float(np.mean(ratio * A + beta * head.kl(z_old, z)))")),
        train="--algo ppo-penalty"),
    Exercise(
        "ppo-penalty-beta", "algos.py", ("next_beta",), "001 §Method 1; 000 §Proximal Policy Optimization",
        claims=(
            (UPDATES + "test_ppo_penalty_update_and_its_beta_rule_equal_001_method_1",
             "after an update β moves as the rule says: β ← β + α(KL − d_targ), kept ≥ 0 (001 §Method 1), or the "
             "PPO paper's β×2 above 1.5 d_targ and β/2 below d_targ/1.5; θ and φ equal the reference's to 1e-10"),
            (UPDATES + "test_ppo_penalty_ppo_rule_keeps_beta_while_the_kl_is_within_a_factor_1_5_of_the_target",
             "while the KL stays within a factor 1.5 of d_targ, the PPO paper's rule keeps β"),
            (UPDATES + "test_the_additive_beta_rule_is_kept_at_0_where_001s_rule_goes_negative",
             "the additive rule is 001's β + α(KL − d_targ), and 0 where that goes negative"),
        ),
        wrong=("ppo-penalty-beta-rule-inverted", "ppo-penalty-additive-no-floor", "ppo-penalty-halving-threshold"),
        train="--algo ppo-penalty"),
)

# ---------------------------------------------------------------------------------------------------------------
# Find the bug: bench/mutate.py mutants (nets.py and algos.py only) that still let the agent run and that the fast
# suite catches. train: the minipg.py flags that exercise the bug; steps: a short run's budget for bug_diagnostics;
# caught_by: a fast test that fails with it (a claim's kind of pattern; test_exercises.py checks it).
# ---------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bug:
    mutant: str
    train: str
    steps: int
    caught_by: str


PENDULUM = "--env Pendulum-v1 --preset pendulum"

BUGS = (
    Bug("categorical-dlogp-sign", "--algo vpg", 20_000,
        MINIPG + "test_head_gradients_wrt_z_match_finite_differences[categorical-log_prob]"),
    Bug("categorical-log-prob-wrong-action", "--algo ppo", 10_240,
        MINIPG + "test_the_deterministic_action_is_the_mode_of_pi[categorical]"),
    Bug("gaussian-dlogp-log-std-drops-1", f"--algo ppo {PENDULUM}", 12_288,
        MINIPG + "test_head_gradients_wrt_z_match_finite_differences[gaussian-log_prob]"),
    Bug("dtanh-drops-square", "--algo ppo", 10_240,
        MINIPG + "test_mlp_backward_is_the_gradient_of_u_dot_y_wrt_theta_and_x[tanh-hidden0]"),
    Bug("jvp-drops-dh-term", "--algo trpo", 10_240,
        MINIPG + "test_mlp_jvp_is_the_directional_derivative_of_forward[tanh-hidden1]"),
    Bug("adam-no-bias-correction", "--algo ppo", 10_240,
        MINIPG + "test_adam_is_kingma_and_ba_with_bias_correction"),
    Bug("policy-backward-extra-mean", f"--algo ppo {PENDULUM}", 12_288,
        MINIPG + "test_policy_backward_carries_head_gradients_to_theta[gaussian-log_prob]"),
    Bug("gae-td-sign", "--algo ppo", 10_240,
        MINIPG + "test_gae_with_lambda_0_is_the_td_error[0.99]"),
    Bug("gae-next-val-off-by-one", "--algo a2c", 10_000,
        MINIPG + "test_gae_with_lambda_0_is_the_td_error[0.99]"),
    Bug("gae-truncation-not-bootstrapped", f"--algo ppo {PENDULUM}", 12_288,
        MINIPG + "test_gae_bootstraps_from_final_val_at_truncations_only"),
    Bug("discount-cumsum-no-gamma", "--algo reinforce", 20_000,
        MINIPG + "test_discount_cumsum_kernel_equals_py_func_equals_the_definition[0.99]"),
    Bug("policy-gradient-drops-A", "--algo vpg", 20_000,
        UPDATES + "test_vpg_update_equals_one_ascent_step_*[categorical-True-0.0-None]"),
    Bug("fit-value-sign", "--algo vpg", 20_000,
        UPDATES + "test_vpg_update_equals_one_ascent_step_*[categorical-True-0.0-None]"),
    Bug("fvp-drops-1/N", "--algo trpo", 10_240,
        MINIPG + "test_fvp_is_the_hessian_of_mean_kl_at_theta_old_times_v[categorical]"),
    Bug("cg-steepest-descent", "--algo npg", 10_240,
        MINIPG + "test_cg_solves_a_random_spd_system[0]"),
    Bug("trpo-step-drops-2", "--algo npg", 10_240,
        MINIPG + "test_npg_step_has_quadratic_kl_equal_to_delta[categorical]"),
    Bug("dz-clip-min-inverted", "--algo ppo", 10_240,
        MINIPG + "test_each_policy_objective_is_the_notes_formula_*[categorical-ppo-clip]"),
    Bug("dz-penalty-kl-sign", "--algo ppo-penalty", 10_240,
        MINIPG + "test_each_policy_objective_is_the_notes_formula_*[categorical-ppo-penalty]"),
)

DIAGNOSTICS = ("kl", "entropy", "explained_var", "return_mean", "loss_pi", "loss_v")  # bug_diagnostics compares these


# ---- grade.py begins: from here to "grade.py ends", this file is copied into every exercise folder's grade.py ----
import ast  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads: BLAS threads make these small tests 4-10x slower

STUB = 'raise NotImplementedError("implement {name}: see README.md")'
STUB_MESSAGE = re.compile(r"implement ([\w.]+): see README\.md")
TEST_TIMEOUT_S = 120  # one test that runs longer than this is an endless loop, not a slow answer


@functools.lru_cache(maxsize=32)
def _parsed(src):
    return ast.parse(src)


def find_function(src, qualname):
    """The function or method `qualname` ("gae", "Categorical.dlogp") in the source text: (first line, last line,
    node), 1-based, decorators included; None if it is not there."""
    scope = _parsed(src).body
    *classes, name = qualname.split(".")
    for part in classes:
        scope = next((n.body for n in scope if isinstance(n, ast.ClassDef) and n.name == part), None)
        if scope is None:
            return None
    for node in scope:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return min([node.lineno] + [d.lineno for d in node.decorator_list]), node.end_lineno, node
    return None


def function_text(src, qualname):
    first, last, _ = find_function(src, qualname)
    return "".join(src.splitlines(keepends=True)[first - 1:last])


def replace_function(src, qualname, text):
    """src with the function `qualname` replaced by `text` (whole lines, decorators included)."""
    return replace_functions(src, {qualname: text})


def replace_functions(src, texts):
    """src with each function of texts ({qualname: text}) replaced by its text, all found in the same src."""
    lines = src.splitlines(keepends=True)
    spans = sorted(((*find_function(src, q)[:2], text) for q, text in texts.items()), reverse=True)
    for first, last, text in spans:  # from the bottom up, so that the line numbers above stay right
        lines[first - 1:last] = [text]
    return "".join(lines)


def _docstring(node):
    first = node.body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    return first if is_doc and isinstance(first.value.value, str) else None


def is_stub(src, qualname):
    """True when the function's body is only its docstring and a `raise NotImplementedError(...)`."""
    node = find_function(src, qualname)[2]
    body = node.body[1:] if _docstring(node) else node.body
    return len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0])


def take(here, there, funcs):
    """Copy into the folder `here` every function of `funcs` ((file, qualname) pairs) that is a stub here and
    written in the folder `there`. Returns the names taken."""
    taken = []
    for file, qualname in funcs:
        path_here, path_there = os.path.join(here, file), os.path.join(there, file)
        if not os.path.exists(path_there):
            continue
        src_here, src_there = open(path_here).read(), open(path_there).read()
        try:
            if is_stub(src_there, qualname) or not is_stub(src_here, qualname):
                continue
        except (SyntaxError, TypeError):  # it does not parse there, or is not there
            continue
        with open(path_here, "w") as f:
            f.write(replace_function(src_here, qualname, function_text(src_there, qualname)))
        taken.append(qualname)
    return taken


def matches(pattern, nodeid):
    """A claim's test: a node id, one with `*` for any text, or a test without [...] for all its cases."""
    if "*" in pattern:
        return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), nodeid) is not None
    return nodeid == pattern or ("[" not in pattern and nodeid.startswith(pattern + "["))


def _short(text, n=160):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _compare(got, want, got_expr, want_expr):
    """What came against what was expected, for a student: the shapes, or the first differing entry."""
    import numpy as np
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return f"{got_expr} has shape {got.shape}, expected {want.shape}"
    if got.ndim == 0:
        return f"{got_expr}: expected {float(want):.10g}, got {float(got):.10g}"  # one number each
    diff = np.abs(got - want)
    scale = max(float(np.nanmax(np.abs(want))) if want.size else 0.0, 1e-300)
    bad = ~(diff <= 1e-6 * scale)  # far above round-off and finite-difference noise; NaN counts as differing
    if not bad.any():
        bad = diff == diff.max()
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = f"[{', '.join(map(str, index))}]"
    named = f" ({want_expr})" if want_expr else ""
    return (f"{got_expr}{where}: expected {want[index]:.10g}{named}, got {got[index]:.10g}; "
            f"{int(bad.sum())} of {got.size} entries differ")


@functools.lru_cache(maxsize=None)
def _statements(path):
    src = open(path).read()
    return src, [n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.stmt)]


def _statement(path, lineno):
    """The source of the statement at path:lineno, and its ast node (the smallest statement around the line)."""
    src, stmts = _statements(path)
    around = [n for n in stmts if n.lineno <= lineno <= n.end_lineno]
    node = min(around, key=lambda n: n.end_lineno - n.lineno) if around else None
    return (ast.get_source_segment(src, node) or "", node) if node else ("", None)


def _value(node, frame):
    """The value of the expression `node` in the frame where the failing check ran (None if it raises)."""
    try:
        return eval(compile(ast.Expression(node), "<check>", "eval"), frame.f_globals, frame.f_locals)
    except Exception:
        return None


def _label(node, frame=None, n=64):
    """The expression as the test writes it, with a name used as an index replaced by its value (info[k] ->
    info['kl']); finite differences by name."""
    text = ast.unparse(node)
    if "fd_" in text:
        return "finite differences"
    if frame is not None:
        class Index(ast.NodeTransformer):
            def visit_Subscript(self, sub):
                self.generic_visit(sub)
                if isinstance(sub.slice, ast.Name):
                    value = frame.f_locals.get(sub.slice.id)
                    if isinstance(value, (str, int)):
                        sub.slice = ast.Constant(value)
                return sub
        text = ast.unparse(Index().visit(ast.parse(text, mode="eval")))
    return _short(text, n)


def _reference(got_label, want_label):
    """How to name the expected side: not at all when the test calls it `expected`, "the reference" when it has
    the name of the side that came (agent.pi.theta against theta)."""
    if want_label in ("expected", "want", "ref", "reference"):
        return ""
    if got_label.split(".")[-1].split("[")[0] == want_label:
        return "the reference"
    return want_label


def _fmt(x):
    import numpy as np
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.10g}"
    return _short(repr(x), 40)


OPS = {ast.Eq: "", ast.NotEq: "≠ ", ast.Lt: "< ", ast.LtE: "≤ ", ast.Gt: "> ", ast.GtE: "≥ "}


def _failed_check(node, frame):
    """What the failing `assert` compared, evaluated again in its frame: the first differing entry of its two
    arrays, or its two numbers; None when it is not a comparison of two values."""
    import numpy as np
    test = node.test
    while isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):  # the first part that is false
        test = next((v for v in test.values if not _value(v, frame)), test.values[-1])
    if isinstance(test, ast.Call) and len(test.args) >= 2:
        name = ast.unparse(test.func).split(".")[-1]
        got, want = _value(test.args[0], frame), _value(test.args[1], frame)
        if got is None or want is None:
            return None
        if name == "within_4se":
            got = np.asarray(got, dtype=np.float64)
            se = got.std(ddof=1) / np.sqrt(len(got))
            return (f"the mean of {_label(test.args[0], frame)} is {got.mean():.8g}, expected {float(want):.8g} "
                    f"({_label(test.args[1], frame)}) within 4 standard errors ({4 * se:.2g})")
        if name in ("close", "array_equal", "allclose", "isclose", "rel_err"):
            got_label = _label(test.args[0], frame)
            return _compare(got, want, got_label, _reference(got_label, _label(test.args[1], frame, 30)))
        return None
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in OPS:
        got, want = _value(test.left, frame), _value(test.comparators[0], frame)
        if got is not None and want is not None and np.ndim(got) == 0 and np.ndim(want) == 0:
            right = _label(test.comparators[0], frame)
            named = f" ({right})" if right != _fmt(want) and not isinstance(test.comparators[0], ast.Constant) else ""
            return f"{_label(test.left, frame)} = {_fmt(got)}, expected {OPS[type(test.ops[0])]}{_fmt(want)}{named}"
    return None


def _rel_err_call(node):
    return next((n for n in ast.walk(node) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "rel_err"), None)


def explain(exc, calls, folder, own, needs):
    """One line a student can act on, for the exception a test raised."""
    if isinstance(exc, NotImplementedError):
        m = STUB_MESSAGE.search(str(exc))
        name = m.group(1) if m else "?"
        if name in own or not m:
            return "not implemented yet" + (f": {name}" if len(own) > 1 else "")
        if name in needs:
            return (f"needs {name} first (exercise {needs[name]}): write it there, then "
                    f"python grade.py --take ../{needs[name]}")
        return f"needs {name}, which is not written in this folder"
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    in_tests = [(f, n) for f, n in frames if os.path.basename(f.f_code.co_filename).startswith("test_")]
    if isinstance(exc, AssertionError):
        frame, lineno = in_tests[-1] if in_tests else (None, 0)
        text, node = _statement(frame.f_code.co_filename, lineno) if frame else ("", None)
        said = str(exc).splitlines()[0] if str(exc) else ""
        if calls and calls[-1][2]:  # rel_err's own check: the two arrays' shapes differ; name them as its caller does
            got, want = calls[-1][:2]
            text, node = _statement(in_tests[-2][0].f_code.co_filename, in_tests[-2][1]) if len(in_tests) > 1 \
                else ("", None)
            call = _rel_err_call(node) if node else None
            label = _label(call.args[0], in_tests[-2][0]) if call else "the result"
            return f"{label} has shape {getattr(got, 'shape', ())}, expected {getattr(want, 'shape', ())}"
        message = None
        if calls and "rel_err(" in text:
            call = _rel_err_call(node)
            got_label = _label(call.args[0], frame)
            want_label = _reference(got_label, _label(call.args[1], frame, 30))
            return _compare(calls[-1][0], calls[-1][1], got_label, want_label)
        message = _failed_check(node, frame) if isinstance(node, ast.Assert) else None
        if message is None:
            return "the check " + _short(text or said, 140) + " failed" + (f" [{_short(said, 60)}]" if said else "")
        return message
    mine = [(f, n) for f, n in frames if os.path.dirname(os.path.abspath(f.f_code.co_filename)) == folder
            and not os.path.basename(f.f_code.co_filename).startswith(("test_", "grade", "conftest"))]
    where = f" at {os.path.basename(mine[-1][0].f_code.co_filename)} line {mine[-1][1]}, in " \
        f"{mine[-1][0].f_code.co_qualname}" if mine else ""
    if type(exc).__name__ in ("TypingError", "UnsupportedError", "NumbaError", "LoweringError"):
        return _numba_message(str(exc), folder)
    lines = [s for s in str(exc).splitlines() if s.strip()]
    return f"raised {type(exc).__name__}: {_short(lines[0] if lines else '', 120)}{where}"


def _numba_message(text, folder):
    """numba could not compile the student's kernel: its first real line, and the student's line it points at."""
    lines = [s.strip() for s in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if s.strip()]
    said = [s for s in lines if not s.startswith(("Failed in nopython mode", "During:", "raised from"))]
    first = said[0] if said else "?"
    if len(said) > 1 and said[1].startswith(">>>"):
        first += " " + said[1][3:].strip()
    where = ""
    for file, n in reversed(re.findall(r'File "([^"]+)", line (\d+):', "\n".join(lines))):
        path = os.path.join(folder, os.path.basename(file))
        if not file.startswith("..") and os.path.exists(path):
            source = open(path).read().splitlines()[int(n) - 1].strip()
            where = f" ({os.path.basename(file)} line {n}: {_short(source, 60)})"
            break
    return f"numba cannot compile it: {_short(first, 110)}{where}"


def run_claims(folder, exercise, verbose=False, first_failure=False):
    """Run the project's tests behind each claim in `folder`, with pytest in this process (first_failure: stop
    there, as pytest -x). Returns ([(claim, passed, message)], error): error is a line when the exercise names a
    test that does not exist."""
    import pytest

    folder = os.path.abspath(folder)
    claims = exercise["claims"]
    own = set(exercise["funcs"])
    needs = exercise.get("needs", {})

    class Grader:
        def __init__(self):
            self.cases = {i: [] for i in range(len(claims))}  # claim -> its node ids
            self.outcome = {}  # node id -> message ("" for a pass)
            self.broken = None  # why a test file could not be collected

        def pytest_collection_modifyitems(self, session, config, items):
            keep = []
            for item in items:
                hits = [i for i, (pattern, _) in enumerate(claims) if matches(pattern, item.nodeid)]
                for i in hits:
                    self.cases[i].append(item.nodeid)
                if hits:
                    keep.append(item)
            config.hook.pytest_deselected(items=[item for item in items if item not in keep])
            items[:] = keep

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_call(self, item):
            calls = []  # (got, expected, shapes differ) of every rel_err(got, expected) the test makes
            original = getattr(item.module, "rel_err", None)
            if original is not None:
                def recording(a, b):
                    calls.append((a, b, getattr(a, "shape", ()) != getattr(b, "shape", ())))
                    return original(a, b)
                item.module.rel_err = recording
            timer = hasattr(signal, "setitimer")
            if timer:
                def too_long(signum, frame):
                    raise TimeoutError(f"took longer than {TEST_TIMEOUT_S} s: an endless loop?")
                old = signal.signal(signal.SIGALRM, too_long)
                signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT_S)
            try:
                return (yield)
            except Exception as e:
                self.outcome[item.nodeid] = explain(e, calls, folder, own, needs)
                raise
            finally:
                if timer:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                    signal.signal(signal.SIGALRM, old)
                if original is not None:
                    item.module.rel_err = original

        def pytest_collectreport(self, report):
            if report.failed:  # a test file could not be imported: the student's file does not compile or import
                text = report.longreprtext or ""
                said = [s[4:].strip() for s in text.splitlines() if s.startswith("E   ") and s[4:].strip()]
                where = re.findall(r"(\w+\.py)\", line (\d+)|(\w+\.py):(\d+)", text)
                mine = [(a or c, b or d) for a, b, c, d in where if not (a or c).startswith(("test_", "conftest"))]
                self.broken = (f"the tests cannot import your code: {_short(said[-1] if said else text, 120)}"
                               + (f" ({mine[-1][0]} line {mine[-1][1]})" if mine else ""))

        def pytest_runtest_logreport(self, report):
            if report.failed and not self.outcome.get(report.nodeid):
                self.outcome[report.nodeid] = f"{report.when} failed: " + _short(report.longreprtext.splitlines()[-1]
                                                                                 if report.longreprtext else "?")
            elif report.when == "call" and report.passed:
                self.outcome.setdefault(report.nodeid, "")

    grader = Grader()
    files = sorted({pattern.split("::")[0] for pattern, _ in claims})
    args = [*files, "-p", "no:cacheprovider", "-c", os.path.join(folder, "pytest.ini"), "--rootdir", folder]
    # quiet: no report, no assertion rewriting (explain() reads the failing check itself) and no plugin whose
    # clean-up costs more than the tests (unraisableexception runs gc.collect five times per session)
    args += ["-q", "--tb=short", "-rfE"] if verbose else ["-q", "--tb=no", "--no-header", "--assert=plain", "-p",
                                                         "no:warnings", "-p", "no:unraisableexception", "-p",
                                                         "no:threadexception", "-p", "no:faulthandler"]
    args += ["-x"] if first_failure else []
    cwd, path = os.getcwd(), list(sys.path)
    os.chdir(folder)
    sys.path.insert(0, folder)
    try:
        if verbose:
            pytest.main(args, plugins=[grader])
        else:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                pytest.main(args, plugins=[grader])
    finally:
        os.chdir(cwd)
        sys.path[:] = path
    if grader.broken:
        return [(claim, False, grader.broken) for _, claim in claims], None
    missing = [pattern for i, (pattern, _) in enumerate(claims) if not grader.cases[i]]
    if missing:
        return [], f"the exercise names tests that do not exist: {', '.join(missing)}"
    results = []
    for i, (_, claim) in enumerate(claims):
        cases = grader.cases[i]
        failed = [c for c in cases if grader.outcome.get(c, "did not run") != ""]
        message = ""
        if failed:
            case = failed[0].split("[", 1)[1][:-1] if "[" in failed[0] else ""
            message = grader.outcome.get(failed[0]) or "did not run"
            if case and len(cases) > 1 and not message.startswith(("not implemented", "needs")):
                message = f"[{case}] {message}"
            if len(cases) > 1 and len(failed) < len(cases):
                message += f" (fails in {len(failed)} of {len(cases)} cases)"
        results.append((claim, not failed, message))
    return results, None


def grade_main(argv, exercise, folder):
    """python grade.py [-v] [--take DIR]: one line per claim, PASS or FAIL; exit code 0 iff every claim passes."""
    verbose = "-v" in argv or "--verbose" in argv
    if "--take" in argv:
        i = argv.index("--take")
        if i + 1 >= len(argv) or not os.path.isdir(argv[i + 1]):
            print("grade.py: --take needs the folder of an earlier exercise", file=sys.stderr)
            return 2
        taken = take(folder, argv[i + 1], [tuple(f) for f in exercise.get("set_funcs", [])])
        print(f"took {', '.join(taken)} from {argv[i + 1]}" if taken else f"nothing to take from {argv[i + 1]}")
        return 0
    unknown = [a for a in argv if a not in ("-v", "--verbose")]
    if unknown:
        print(f"grade.py: unknown argument {unknown[0]!r}; use: python grade.py [-v] [--take DIR]", file=sys.stderr)
        return 2
    print(f"grading {exercise['title']}")
    results, error = run_claims(folder, exercise, verbose)
    if error:
        print(f"grade.py: {error}", file=sys.stderr)
        return 2
    for claim, passed, message in results:
        print(f"{'PASS' if passed else 'FAIL'}  {claim}")
        if message:
            print(f"      {message}")
    n_pass = sum(passed for _, passed, _ in results)
    if n_pass == len(results):
        print(f"all {n_pass} claims pass. Now train with it: python minipg.py {exercise['train']}")
        return 0
    print(f"{n_pass} of {len(results)} claims pass" + ("" if verbose else " (python grade.py -v: pytest's own report)"))
    return 1
# ---- grade.py ends ----


# ---------------------------------------------------------------------------------------------------------------
# Building folders
# ---------------------------------------------------------------------------------------------------------------

class UsageError(Exception):
    """Bad input: one line on stderr, exit code 2."""


def read(name):
    with open(os.path.join(HERE, name)) as f:
        return f.read()


def product_files():
    """The project's files a folder needs to train and to test: the root-level .py files that are not tests
    (nets.py, algos.py, minipg.py and the runner's helpers), requirements.txt and pytest.ini."""
    names = sorted(f for f in os.listdir(HERE) if f.endswith(".py") and not f.startswith("test_")
                   and f not in NOT_PRODUCT)
    return names + [f for f in ("requirements.txt", "pytest.ini") if os.path.exists(os.path.join(HERE, f))]


def new_folder(out):
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UsageError(f"--out {out} exists and is not an empty folder; give a new one")
    os.makedirs(out, exist_ok=True)


def copy_project(out):
    """The project's product files, its two maths test files and a conftest.py, into the folder out."""
    for name in product_files() + list(TESTS):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(out, name))
    with open(os.path.join(out, "conftest.py"), "w") as f:
        f.write('"""Set before numpy loads: the tests\' matrices are small; BLAS threads make them 4-10x slower."""\n'
                "import os\n\n"
                'for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):\n'
                '    os.environ.setdefault(_var, "1")\n')


def stub_of(src, qualname):
    """The function as the student gets it: decorators, signature, docstring and the body's `#` comment lines (the
    equations with their note and section), then `raise NotImplementedError("implement <name>: see README.md")`."""
    first, last, node = find_function(src, qualname)
    lines = src.splitlines(keepends=True)
    body0, doc = node.body[0], _docstring(node)
    if body0.lineno == node.lineno:
        raise ValueError(f"{qualname} is written on one line: there is no body to take out")
    kept = lines[first - 1:body0.lineno - 1]
    code_from = doc.end_lineno if doc else body0.lineno - 1
    if doc:
        kept += lines[doc.lineno - 1:doc.end_lineno]
    kept += [s for s in lines[code_from:last] if s.strip().startswith("#")]
    kept.append(" " * body0.col_offset + STUB.format(name=qualname) + "\n")
    return "".join(kept)


@functools.lru_cache(maxsize=8)
def _stubbed(src, qualnames):
    src = replace_functions(src, {q: stub_of(src, q) for q in qualnames})
    compile(src, "<stubbed>", "exec")
    return src


def stubbed_files(funcs):
    """{file: its text with every function of funcs ((file, qualname) pairs) stubbed}; a UsageError naming the
    function when the project no longer has it."""
    out = {}
    for file in sorted({file for file, _ in funcs}):
        src, names = read(file), tuple(q for fl, q in funcs if fl == file)
        missing = [q for q in names if find_function(src, q) is None]
        if missing:
            raise UsageError(f"{file} has no {', '.join(missing)}: exercises.EXERCISES names a function that is gone")
        out[file] = _stubbed(src, names)
    return out


def number(ex):
    return EXERCISES.index(ex) + 1


def folder_name(ex):
    return f"{number(ex):02d}-{ex.name}"


def notes_of(ex):
    return sorted(set(re.findall(r"\b(00[0-3]) §", ex.note)))


def grade_data(ex, set_exercises=()):
    """What grade.py knows: the exercise, its claims and, in a set, which folder writes each other function."""
    others = [o for o in set_exercises if o is not ex]
    return dict(name=ex.name, title=f"exercise {number(ex)}, {ex.name}: {' and '.join(ex.funcs)} in {ex.file} "
                                    f"({ex.note})",
                file=ex.file, funcs=list(ex.funcs), note=ex.note, train=ex.train,
                claims=[list(c) for c in ex.claims],
                needs={f: folder_name(o) for o in others for f in o.funcs},
                set_funcs=[[o.file, f] for o in set_exercises for f in o.funcs])


def grade_source():
    """grade.py's code: the part of this file between its two markers."""
    src = read("exercises.py")
    begin = src.index("# ---- grade.py begins")
    body = src[src.index("\n", begin) + 1:src.index("# ---- grade.py ends ----")]
    return body.replace("  # noqa: E402", "")


def write_grade_py(out, data):
    with open(os.path.join(out, "grade.py"), "w") as f:
        f.write(f'"""grade.py -- {data["title"]}.\n\n'
                "    python grade.py          # one line per claim: PASS, or FAIL with what was expected and "
                "what came\n"
                "    python grade.py -v       # the same after pytest's own report of the failures\n"
                + ("    python grade.py --take ../NN-name   # copy in what you wrote in an earlier exercise's folder\n"
                   if data["needs"] else "")
                + "\nEach claim is one of the project's tests (test_minipg.py, test_updates.py), run on your "
                "function.\n"
                'Made by exercises.py from the project; nothing here needs changing.\n"""\n'
                "import os\nimport sys\n" + grade_source()
                + f"\n\nEXERCISE = {pprint.pformat(data, width=116, sort_dicts=False)}\n\n"
                "if __name__ == \"__main__\":\n"
                "    sys.exit(grade_main(sys.argv[1:], EXERCISE, os.path.dirname(os.path.abspath(__file__))))\n")


def copy_notes(out, notes):
    """The cited lecture notes, into out/notes/, when this checkout has them (../shared/seeds)."""
    found = [NOTES[n][0] for n in notes if os.path.exists(os.path.join(NOTES_DIR, NOTES[n][0]))]
    if found:
        os.makedirs(os.path.join(out, "notes"), exist_ok=True)
        for name in found:
            shutil.copyfile(os.path.join(NOTES_DIR, name), os.path.join(out, "notes", name))
    return found


def exercise_readme(ex, data, stubs, notes_copied, in_set):
    funcs = " and ".join(f"`{f}`" for f in ex.funcs)
    notes = "\n".join(f"- {n}: `{NOTES[n][0]}`, {NOTES[n][1]}" + (" (in `notes/`)" if NOTES[n][0] in notes_copied
                                                                  else "") for n in notes_of(ex))
    claims = "\n".join(f"- {claim}  \n  (`{test}`)" for test, claim in ex.claims)
    needs = ("\nThis folder is one of a set, in which every exercise's function is a stub. Where a claim here uses "
             "the function of an earlier exercise, grade.py says which: write it there, then copy it in with "
             "`python grade.py --take ../NN-name`.\n" if in_set else "")
    train_note = ("\nIn a set, the run needs every function the algorithm uses: copy in what you wrote with "
                  "`--take` first.\n" if in_set else "")
    return f"""# Exercise {number(ex)}: {ex.name}

Write {funcs} in `{ex.file}`. Read **{ex.note}** first: the function is that section's equation, in code.
The notes:
{notes}

In `{ex.file}` the body has been taken out; the signature, the docstring and the equation comments are
what is left:

```python
{stubs}```
{needs}
## Grade it

    python grade.py

It runs the project's own tests of this function (`test_minipg.py`, `test_updates.py`) and prints one line per
claim: `PASS`, or `FAIL` with what was expected and what came. It passes when every claim does:
{claims}

`python grade.py -v` adds pytest's own report; `python -m pytest -q test_minipg.py test_updates.py` runs every
test of the project (others use your function too).

## Then train with it

    python minipg.py {ex.train}
{train_note}
`python minipg.py --help` lists every flag; the run's folder (printed at the start) has `progress.csv` with
the diagnostics (`kl`, `entropy`, `explained_var`, ...) and `summary.json` with the final evaluation.
"""


def answer(ex, wrong=None):
    """{qualname: text} of ex's functions as the project has them, or with the wrong answer `wrong` (an entry of
    ex.wrong) made in them: a mutant's replacement, or the entry's own."""
    src = read(ex.file)
    texts = {f: function_text(src, f) for f in ex.funcs}
    if wrong is None:
        return texts
    old, new = (mutants()[wrong].old, mutants()[wrong].new) if isinstance(wrong, str) else wrong[1:]
    inside = [f for f in ex.funcs if texts[f].count(old) == 1]
    if not inside:
        raise UsageError(f"exercise {ex.name}: the wrong answer {wrong if isinstance(wrong, str) else wrong[0]!r} "
                         f"does not fit {' or '.join(ex.funcs)} (its text is not there exactly once)")
    texts[inside[0]] = texts[inside[0]].replace(old, new, 1)
    return texts


def put_answer(folder, file, texts):
    """Write the functions of texts ({qualname: text}) into folder/file in place of what is there."""
    path = os.path.join(folder, file)
    with open(path) as f:
        src = replace_functions(f.read(), texts)
    with open(path, "w") as f:
        f.write(src)


def write_exercise(ex, out, stubbed=None, set_exercises=()):
    """An exercise folder in out: the project, ex's function(s) stubbed (or every function of `stubbed`, in a set),
    the tests, conftest.py, grade.py, README.md and the cited notes."""
    files = stubbed_files(stubbed or [(ex.file, f) for f in ex.funcs])  # first: a stale entry writes nothing
    new_folder(out)
    copy_project(out)
    for file, text in files.items():
        with open(os.path.join(out, file), "w") as f:
            f.write(text)
    src = files[ex.file]
    stubs = "\n".join(function_text(src, f) for f in ex.funcs)
    data = grade_data(ex, set_exercises)
    write_grade_py(out, data)
    copied = copy_notes(out, notes_of(ex))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(exercise_readme(ex, data, stubs, copied, bool(set_exercises)))


def write_set(out, chosen):
    """The teacher's command: out/students/ (a folder per chosen exercise, every chosen function a stub in each,
    and handout.md) and out/solutions/ (each exercise's reference function, and the table of them)."""
    stubbed = [(ex.file, f) for ex in chosen for f in ex.funcs]
    stubbed_files(stubbed)  # first: a stale entry writes nothing
    new_folder(out)
    students, solutions = os.path.join(out, "students"), os.path.join(out, "solutions")
    os.makedirs(solutions)
    for ex in chosen:
        write_exercise(ex, os.path.join(students, folder_name(ex)), stubbed, chosen)
        src = read(ex.file)
        with open(os.path.join(solutions, folder_name(ex) + ".py"), "w") as f:
            f.write(f"# Exercise {number(ex)}, {ex.name}: the reference {' and '.join(ex.funcs)} from {ex.file}\n"
                    f"# ({ex.note}), as the project has it.\n\n"
                    + "\n".join(function_text(src, name) for name in ex.funcs))
    rows = "\n".join(f"| {number(ex)} | `{folder_name(ex)}/` | {' and '.join(f'`{f}`' for f in ex.funcs)} "
                     f"({ex.file}) | {ex.note} | {len(ex.claims)} | `python minipg.py {ex.train}` |" for ex in chosen)
    header = "| # | folder | write | read first | claims | then train |\n|---|---|---|---|---|---|\n"
    notes = "\n".join(f"- {n}: `{file}`, {what}" for n, (file, what) in NOTES.items())
    with open(os.path.join(students, "handout.md"), "w") as f:
        f.write(f"""# Policy gradients by hand: the exercises

Each folder is the minipg project with functions taken out. In every folder, every function of this set is a stub,
so that no folder holds the answer to another. Do them in this order: each builds on the ones before it. In a
folder, read its README.md, write the function, and run `python grade.py` until every claim passes. Where a claim
uses the function of an earlier exercise, grade.py says so: copy in what you wrote there with
`python grade.py --take ../NN-name`.

{header}{rows}

The notes (cited as `NNN §section`):
{notes}
""")
    with open(os.path.join(solutions, "README.md"), "w") as f:
        f.write("# Solutions\n\nEach file is the project's reference function for one exercise, as it stands in "
                "nets.py or algos.py; students/ holds none of them.\n\n" + header + rows + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Find the bug
# ---------------------------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def mutants():
    """bench/mutate.py's MUTANTS, by name: loaded by path (bench is not a package)."""
    path = os.path.join(HERE, "bench", "mutate.py")
    if not os.path.exists(path):
        raise UsageError(f"{path} is missing: wrong answers and bugs come from it")
    spec = importlib.util.spec_from_file_location("minipg_bench_mutate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {m.name: m for m in module.MUTANTS}


def draw(seed):
    """Bug number `seed`: one of BUGS, drawn with np.random.default_rng(seed)."""
    import numpy as np
    return BUGS[int(np.random.default_rng(seed).integers(len(BUGS)))]


def mutated(mutant):
    """The text of the mutant's file with its one replacement made."""
    src = read(mutant.file)
    if src.count(mutant.old) != 1:
        raise UsageError(f"mutant {mutant.name} no longer fits {mutant.file} (its target occurs "
                         f"{src.count(mutant.old)} times)")
    return src.replace(mutant.old, mutant.new, 1)


def plant(out, mutant):
    with open(os.path.join(out, mutant.file), "w") as f:
        f.write(mutated(mutant))


def write_bug(out, seed):
    bug = draw(seed)
    mutant = mutants()[bug.mutant]
    text = mutated(mutant)  # first: a stale mutant writes nothing
    new_folder(out)
    copy_project(out)
    with open(os.path.join(out, mutant.file), "w") as f:
        f.write(text)
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(f"""# Find the bug (draw {seed})

One line of `nets.py` or `algos.py` in this copy of minipg has been changed. The agent still runs; it just does
not do what the notes say. Find the line.

1. Train with the algorithm the bug touches, and watch it:

       python minipg.py {bug.train}

   Compare with what you expect: is it learning slower than it should? Does the `kl` explode, or stay far from
   its bound? Does the `entropy` collapse or climb? Is `explained_var` negative? The run's folder has every
   iteration's diagnostics in `progress.csv` and the final evaluation in `summary.json`.
2. Run the proofs:

       python -m pytest -q test_minipg.py test_updates.py

   Which claims fail? Each test is named after what it proves; the failing ones say where to look.
3. Find the line, fix it, and run the tests again until they pass.

Your teacher can show the answer with `python minipg.py --exercise reveal --seed {seed}`.
""")
    stamp = os.stat(os.path.join(HERE, "nets.py")).st_mtime
    for name in os.listdir(out):  # the same time on every file: `ls -t` must not point at the changed one
        os.utime(os.path.join(out, name), (stamp, stamp))
    return bug


def reveal(seed):
    bug = draw(seed)
    mutant = mutants()[bug.mutant]
    old, new = read(mutant.file), mutated(mutant)
    diff = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                f"a/{mutant.file}", f"b/{mutant.file}")
    return f"bug {seed}: {mutant.name} -- {mutant.doc} (train: python minipg.py {bug.train})\n" + "".join(diff)


def _progress(path):
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def train_once(folder, bug, steps, seed=0):
    """python minipg.py <bug.train> --steps S --seed N --out run in folder: (progress rows, summary, seconds)."""
    import time
    out = os.path.join(folder, f"run-{seed}")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "minipg.py", *bug.train.split(), "--steps", str(steps), "--seed", str(seed), "--out", out]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} failed in {folder}: {proc.stderr.strip()[-400:]}")
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return _progress(os.path.join(out, "progress.csv")), summary, time.perf_counter() - t0


def bug_diagnostics(name, steps=None, seed=0, clean_runs=None):
    """Train bug `name`'s algorithm for a short run in a copy with the bug planted and in a clean copy, with the same
    seed, and compare the diagnostics. Returns a dict: per column of DIAGNOSTICS the largest relative difference
    max_t |bug_t - clean_t| / max_t |clean_t| over the iterations, the largest of them, both final evaluations and the
    seconds each run took. clean_runs (a dict) shares the clean runs between calls."""
    bug = next(b for b in BUGS if b.mutant == name)
    steps = steps or bug.steps
    mutant = mutants()[name]
    clean_runs = {} if clean_runs is None else clean_runs
    with tempfile.TemporaryDirectory(prefix="minipg-bug-") as tmp:
        key = (bug.train, steps, seed)
        if key not in clean_runs:
            os.makedirs(os.path.join(tmp, "clean"))
            copy_project(os.path.join(tmp, "clean"))
            clean_runs[key] = train_once(os.path.join(tmp, "clean"), bug, steps, seed)
        os.makedirs(os.path.join(tmp, "bug"))
        copy_project(os.path.join(tmp, "bug"))
        plant(os.path.join(tmp, "bug"), mutant)
        planted = train_once(os.path.join(tmp, "bug"), bug, steps, seed)
    (rows_c, sum_c, sec_c), (rows_b, sum_b, sec_b) = clean_runs[key], planted
    diffs = {}
    for col in DIAGNOSTICS:
        pairs = [(float(b[col]), float(c[col])) for b, c in zip(rows_b, rows_c) if b.get(col) and c.get(col)]
        pairs = [(b, c) for b, c in pairs if b == b and c == c]  # both not NaN
        if pairs:
            scale = max(max(abs(c) for _, c in pairs), 1e-12)
            diffs[col] = max(abs(b - c) for b, c in pairs) / scale
    largest = max(diffs.items(), key=lambda kv: kv[1]) if diffs else (None, 0.0)
    return dict(bug=name, train=bug.train, steps=steps, diffs=diffs, largest=largest,
                eval_clean=sum_c.get("eval_return_mean"), eval_bug=sum_b.get("eval_return_mean"),
                seconds_clean=sec_c, seconds_bug=sec_b)


# ---------------------------------------------------------------------------------------------------------------
# Grading many folders in one process (test_exercises.py): the same run_claims as grade.py, sharing what does not
# change between folders.
# ---------------------------------------------------------------------------------------------------------------

def load_folder_modules(folder, kernels):
    """Import the folder's nets.py and algos.py as `nets` and `algos`, for the tests to find in sys.modules. A numba
    kernel whose text is the same as one loaded before is that one, compiled once: fresh compiles would cost a few
    seconds per folder, and the kernel is the same function."""
    for name in ("nets", "algos"):
        path = os.path.join(folder, f"{name}.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        src = open(path).read()
        for attr, obj in list(vars(module).items()):
            if hasattr(obj, "py_func") and getattr(obj.py_func, "__module__", None) == name:
                key = (name, attr, function_text(src, attr))
                setattr(module, attr, kernels.setdefault(key, obj))


def grade_folders(jobs):
    """jobs: [(folder, exercise data or None, first_failure)]; None reads EXERCISE from the folder's grade.py.
    Returns, per job, {"results": [(claim, passed, message)], "error": line or None, "seconds": s}."""
    import time
    kernels, out = {}, []
    for folder, data, first_failure in jobs:
        t0 = time.perf_counter()
        if data is None:
            src = open(os.path.join(folder, "grade.py")).read()
            data = ast.literal_eval(src.split("\nEXERCISE = ", 1)[1].split("\n\nif __name__", 1)[0])
        for name in ("nets", "algos", "conftest", *(t[:-3] for t in TESTS)):
            sys.modules.pop(name, None)
        try:
            load_folder_modules(os.path.abspath(folder), kernels)
        except Exception:  # the student's file does not import: let pytest find that out, and say so
            for name in ("nets", "algos"):
                sys.modules.pop(name, None)
        results, error = run_claims(folder, data, first_failure=first_failure)
        out.append({"results": results, "error": error, "seconds": time.perf_counter() - t0})
    return out


# ---------------------------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------------------------

COMMANDS = ("list", "bug", "reveal", "set")


def by_name(name):
    for ex in EXERCISES:
        if ex.name == name:
            return ex
    close = difflib.get_close_matches(name, [ex.name for ex in EXERCISES] + list(COMMANDS), n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UsageError(f"unknown exercise {name!r}{hint} (--exercise list shows them)")


def list_text(markdown=False):
    if markdown:
        rows = [f"| {number(ex)} | `{ex.name}` | {' and '.join(f'`{f}`' for f in ex.funcs)} ({ex.file}) | {ex.note} | "
                f"{len(ex.claims)} |" for ex in EXERCISES]
        return "| # | exercise | write | read first | claims |\n|---|---|---|---|---|\n" + "\n".join(rows)
    width = max(len(ex.name) for ex in EXERCISES)
    return "\n".join(f"{number(ex):2d}  {ex.name:<{width}}  {' + '.join(ex.funcs)} ({ex.file}): {ex.note}"
                     for ex in EXERCISES)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def main(argv=None):
    """minipg.py --exercise ...: returns the exit code (2 for bad input, with one line on stderr)."""
    p = _Parser(prog="minipg.py --exercise", add_help=False)
    p.add_argument("--exercise", required=True, metavar="NAME|list|bug|reveal|set")
    p.add_argument("--out", metavar="DIR")
    p.add_argument("--seed", type=int)
    p.add_argument("--only", metavar="A,B,...")
    p.add_argument("--markdown", action="store_true")
    try:
        args = p.parse_args(sys.argv[1:] if argv is None else argv)
        what = args.exercise
        given = {k for k in ("out", "seed", "only") if getattr(args, k) is not None} | ({"markdown"} if args.markdown
                                                                                      else set())
        allowed = {"list": {"markdown"}, "bug": {"out", "seed"}, "reveal": {"seed"}, "set": {"out", "only"}}
        ex = None if what in COMMANDS else by_name(what)
        extra = given - allowed.get(what, {"out"})
        if extra:
            raise UsageError(f"--exercise {what} does not take --{sorted(extra)[0]}")
        if what in ("bug", "reveal") and (args.seed is None or args.seed < 0):
            raise UsageError(f"--exercise {what} needs --seed N, N >= 0 (the draw)")
        if what not in ("list", "reveal") and not args.out:
            raise UsageError(f"--exercise {what} needs --out DIR (a new folder)")
        if what == "list":
            print(list_text(args.markdown))
        elif what == "reveal":
            print(reveal(args.seed), end="")
        elif what == "bug":
            bug = write_bug(args.out, args.seed)
            print(f"wrote {args.out}/: find the bug (draw {args.seed}); start with: cd {args.out} && "
                  f"python minipg.py {bug.train}")
        elif what == "set":
            names = [s for s in (args.only or "").split(",") if s]
            chosen = [by_name(s) for s in names] if names else list(EXERCISES)
            chosen = sorted(set(chosen), key=EXERCISES.index)
            write_set(args.out, chosen)
            print(f"wrote {args.out}/students/ ({len(chosen)} exercises and handout.md) and {args.out}/solutions/")
        else:
            write_exercise(ex, args.out)
            print(f"wrote {args.out}/: {' and '.join(ex.funcs)} in {ex.file} to write; then: cd {args.out} && "
                  "python grade.py")
        return 0
    except UsageError as e:
        print(f"minipg: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python exercises.py --exercise list | head` ends quietly
    sys.exit(main())
