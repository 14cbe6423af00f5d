"""Training one model: the named AdamW chain and Muon (optimizer, muon); train state, PRNG roles,
the train and pool steps and the one evaluation program (train); run logs to metrics.jsonl and wandb
(tracking). Pretraining is a job of growth.experiment.

May import: growth, growth.distributed, growth.store, growth.models.
"""
