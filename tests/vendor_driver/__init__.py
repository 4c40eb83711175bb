"""acme_guard: the tests' stand-in for a driver vendor's boot-start kernel module (never shipped).

build.build_module() builds it against the reference guest's kernel headers;
content.good_rules() / refused_rules(reason) / crashing_rules() write its content files.
"""
