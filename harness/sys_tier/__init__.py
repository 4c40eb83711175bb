"""The sys tier: the built Windows driver (harnessflt.sys) run under a Windows kernel-mode
emulator, between the host build of the interpreter and a Windows VM (docs/sys-tier.md).

Modules: kernel (speakeasy machine, hooks), memory (Mm reservations, MDLs, pool), filesystem
(Zw file calls over a host folder), fltmgr (Filter Manager), iomanager (reinitialization
queues, driver object references), console (DbgPrint), symbols (link map), bugcheck, runner
(the boot's order of calls), report (the JSON verdict), check (entry points).  It imports
nothing from the VM layers.
"""
