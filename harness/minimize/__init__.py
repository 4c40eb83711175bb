"""`harness minimize`: shrink a crashing content file to a smaller one that crashes the same way.

Layers: `ddmin` (Zeller's algorithm over any list), `passes` (format-aware reductions of a
channel file, then byte-level ddmin), `oracle` (the C host build and the VM as judges of "the
same crash"), `culprit` (the cause in words), `minimizer` (the run: originals, oracle choice,
passes, VM confirmation) and `cli` (the command).
"""
