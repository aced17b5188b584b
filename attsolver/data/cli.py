"""``attsolver data ...``.  Placeholder for the data work item."""


def add_data_parser(sub):
    p = sub.add_parser("data", help="generate and inspect trajectory datasets")
    p.set_defaults(func=lambda args: print("not implemented yet") or 1)
