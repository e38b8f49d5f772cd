"""train.py on a disk that fills up at the latest checkpoint of step 100: the background
writer of that save fails with ENOSPC, as a full disk makes it fail, once its files are
written and before they are committed (so no write of that save is still running when
the run stops). Used by test_workdir_safety.py; arguments as train.py's; the time of the
failure is written to the file $FULL_DISK_TIME_FILE."""

import errno
import os
import pathlib
import re
import runpy
import sys
import time

from orbax.checkpoint._src.path import atomicity

FULL_AT = re.compile(r"/latest/100$")
_commit = atomicity.on_commit_callback


async def _commit_on_a_full_disk(tmp_dir, **kwargs):
  if FULL_AT.search(str(tmp_dir.get_final())):
    failed_at = pathlib.Path(os.environ["FULL_DISK_TIME_FILE"])
    failed_at.write_text(str(time.time()))  # when the write failed, for the test
    raise OSError(errno.ENOSPC, "No space left on device", str(tmp_dir.get()))
  return await _commit(tmp_dir, **kwargs)


atomicity.on_commit_callback = _commit_on_a_full_disk
sys.argv[0] = "train.py"
runpy.run_path("train.py", run_name="__main__")
