"""Training: one Accelerate trainer that every stage runs on.

    task.py        Task: the interface a stage implements (build, train_step, evaluate, generate)
    trainer.py     Trainer: config -> Accelerator -> build -> prepare -> resume -> loop -> export
    registry.py    experiment.train_stage -> Task class (one line per stage)
    optim.py       AdamW with decay / no-decay groups
    schedules.py   warmup + cosine/constant lr, counted in optimizer steps
    ema.py         EMA of trainable weights with a swap() context
    checkpoint.py  atomic checkpoint-<step>/ folders, resume lookup, export + load_export
    data.py        epoch-seeded sampler and dataloader (exact data position on resume)
    logs.py        setup_logging (rank 0 -> stdout + train.log)
    media.py       input | output | |difference| video panels -> GIF/mp4 + wandb
"""
