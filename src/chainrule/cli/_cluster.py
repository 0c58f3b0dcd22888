"""``--workers N`` and ``--scheduler ADDRESS``: where a search's trials run.

Without either, in this process. With ``--workers N``, on a local Dask cluster of N
processes started for the command and stopped after it; with ``--scheduler``, on the
existing cluster of that Dask scheduler. Dask is the optional extra
``chainrule[distributed]``; without it, either option is a one-line error.
"""

from __future__ import annotations

import contextlib

from chainrule.cli import CommandError
from chainrule.cli._common import info, positive_int


def add_cluster_arguments(parser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--workers",
        type=positive_int,
        metavar="N",
        help="run the search's trials on a local Dask cluster of N processes "
        '(pip install "chainrule[distributed]")',
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run the search's trials on the Dask cluster of this scheduler, e.g. tcp://host:8786",
    )


@contextlib.contextmanager
def cluster_client(args):
    """The ``dask.distributed.Client`` that ``--workers``/``--scheduler`` ask for, or None."""
    workers, address = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is None and address is None:
        yield None
        return
    flag = "--workers" if address is None else "--scheduler"
    if not args.search:
        raise CommandError(f"{flag} runs the search's trials on a cluster; add --search")
    from chainrule.train.distributed import connect, local_cluster

    with contextlib.ExitStack() as stack:
        try:
            cluster = local_cluster(workers) if address is None else connect(address)
            client = stack.enter_context(cluster)
        except (ImportError, OSError, ValueError) as e:
            raise CommandError(str(e)) from None
        n = len(client.nthreads())  # (scheduler_info()'s list can be empty between refreshes)
        where = "a local Dask cluster" if address is None else f"the Dask cluster at {address}"
        info(args, f"search trials run on {where} ({n} workers)")
        yield client
