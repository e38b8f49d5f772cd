"""The configurations (ml_collections), one file per task; each file's docstring gives the
commands that run it and what they reach. Installed as a package: `from configs import
lra_text` works anywhere.

  lra_listops, lra_text, lra_retrieval, lra_image, lra_pathfinder, lra_pathx
      the Luna reference hyperparameters of each LRA task, each with a :cpu variant
      (ListOps and Pathfinder also :cpu_spt, self-pre-trained)
  wmt14_en_de
      WMT'14 En-De translation: :luna, :lightconv, :dynamicconv (and their _big),
      :transformer, and :cpu (offline, a generated task)

`python train.py --config configs/FILE.py:VARIANT --config.x=y` runs one.
"""
