"""The side-by-side benchmark behind ``benchmarks/bench.py`` (run that; its docstring says
what is measured and how).

Modules, in the order a run uses them: ``settings`` (sizes, limits, the selected
operations), ``data`` (layouts, data, selections), ``stores`` (``--store`` and the run's
store), ``impls`` (how each implementation of ``zarrs_cffi.cli.implementations`` is
driven), ``cells`` (a result, or why there is none), ``preflight`` (a smoke run of each
implementation in a child process), the sections ``layouts``, ``memory``, ``minibatch``,
``opening`` and ``anndata_rows``, then ``environment`` and ``report`` (the markdown), and
``command`` (options and ``main``).
"""
