# bench/ab.sh OLD NEW -- the pairs' minipg commands (bench/pairs.py) with two checkouts of minipg, alternating:
# old, new, old, new for each task, seed 0, from each checkout's own folder. Prints wall, rollout and update seconds.
#     git worktree add /tmp/old e90aeb2 && bash bench/ab.sh /tmp/old "$PWD"
OLD=$1; NEW=$2
export OPENBLAS_NUM_THREADS=1
ppo="--algo ppo --env CartPole-v1 --steps 100000 --num-envs 8 --num-steps 32 --minibatch 256 --epochs 20 --gamma 0.98 --lam 0.8 --lr-pi 1e-3 --anneal-lr --anneal-clip --clip-eps 0.2 --ent-coef 0"
trpo="--algo trpo --steps 100000 --num-envs 2 --num-steps 512 --lam 0.98 --gamma 0.99 --cg-damping 1e-3 --v-iters 20 --max-kl 0.01 --lr-v 1e-3"
a2c="--algo a2c --steps 100000 --num-envs 8 --num-steps 5 --lr-pi 7e-4 --optimiser rmsprop --ent-coef 0"
pendulum="--algo ppo --env Pendulum-v1 --preset pendulum --steps 102400 --target -200"
for task in ppo trpo a2c pendulum; do for t in "$OLD" "$NEW" "$OLD" "$NEW"; do
  (cd $t && python minipg.py ${!task} --seed 0 --episodes 1 --out /tmp/minipg-ab-$task --overwrite > /dev/null 2>&1)
  python3 -c "import json,csv; s=json.load(open('/tmp/minipg-ab-$task/summary.json')); r=list(csv.DictReader(open('/tmp/minipg-ab-$task/progress.csv')))[-1]; print('$task', '$t', round(s['wall_s'],2), 'rollout', round(float(r['rollout_s']),2), 'update', round(float(r['update_s']),2))"
done; done
