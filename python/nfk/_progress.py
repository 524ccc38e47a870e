"""Progress of long library calls as tqdm bars (where tqdm is installed), one bar per stage."""
import contextlib

# The library's stage names (nfk/progress.h) as a reader knows them.
_STAGES = {"JVP": "V q products (JVP)", "VJP": "V^T m products (VJP)",
           "gradients": "per-example gradients", "svd": "SVD steps", "VQ": "embedding"}


class _Bars:
    """A callable(stage, done, total) that draws a tqdm bar per stage; closes them at the end."""

    def __init__(self, tqdm, what):
        self._tqdm, self._what, self._bar, self._stage = tqdm, what, None, None

    def __call__(self, stage, done, total):
        if stage != self._stage or self._bar is None or done < self._bar.n:
            self.close()
            self._stage = stage
            self._bar = self._tqdm(total=total, desc=f"nfk {self._what}: "
                                   f"{_STAGES.get(stage, stage)}", leave=False,
                                   delay=0.5)  # only for calls long enough to need one
        self._bar.update(done - self._bar.n)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def progress(verbose, what):
    """The progress callback for one library call: tqdm bars when ``verbose`` and tqdm imports,
    else None (silent)."""
    if not verbose:
        yield None
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield None
        return
    bars = _Bars(tqdm, what)
    try:
        yield bars
    finally:
        bars.close()
