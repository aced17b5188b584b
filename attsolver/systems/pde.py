"""Periodic 1-D semilinear PDEs.  Placeholder: filled in by the spectral work item."""


class SemilinearPDE:  # replaced by the spectral work item
    pass


class Burgers(SemilinearPDE):
    pass


class KuramotoSivashinsky(SemilinearPDE):
    pass
