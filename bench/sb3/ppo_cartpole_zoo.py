# SB3 PPO on CartPole-v1 with rl-zoo's hyperparameters (as in shared/reference/sb3.json), timed on this machine today.
import sys, time
import torch
torch.set_num_threads(1)
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.utils import get_linear_fn
seed = int(sys.argv[1])
env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
            learning_rate=get_linear_fn(1e-3, 0, 1), clip_range=get_linear_fn(0.2, 0, 1), seed=seed, verbose=0, device="cpu")
t = time.perf_counter()
model.learn(100_000)
print(f"sb3 ppo CartPole-v1 zoo 100k seed {seed}: learn {time.perf_counter() - t:.2f} s")
