"""crashtest: a kernel module that provokes one kind of kernel report at load (tests only, never shipped).

build.build_module() builds it against the reference guest's kernel headers; capture.py boots each
mode through `harness reproduce` and saves fixtures/logs/linux/captured-<mode>.log.
"""
