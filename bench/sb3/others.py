# SB3 / sb3-contrib with rl-zoo's hyperparameters (as in shared/reference/sb3.json), timed on this machine today.
import sys, time
import torch
torch.set_num_threads(1)
from stable_baselines3 import A2C, PPO
from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
task, seed = sys.argv[1], int(sys.argv[2])
if task == "trpo":
    env = make_vec_env("CartPole-v1", n_envs=2, seed=seed)
    model = TRPO("MlpPolicy", env, n_steps=512, batch_size=512, cg_damping=0.001, gae_lambda=0.98, gamma=0.99,
                 learning_rate=0.001, n_critic_updates=20, seed=seed, device="cpu")
elif task == "a2c":
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")
else:
    env = make_vec_env("Pendulum-v1", n_envs=4, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                learning_rate=1e-3, clip_range=0.2, use_sde=False, seed=seed, device="cpu")
t = time.perf_counter()
model.learn(100_000 if task != "pendulum" else 102_400)
print(f"sb3 {task} seed {seed}: learn {time.perf_counter() - t:.2f} s")
