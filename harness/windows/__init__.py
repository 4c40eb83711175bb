"""The Windows guest family: libvirt domains for Windows 10, 11 and Server 2022.

    from harness.windows import windows_domain_values, create_overlay, Cdrom, WINDOWS_TEMPLATE
    values = windows_domain_values("win11", domain_type=..., name=..., run_id=..., test_id=...,
                                   artifacts=artifacts, disk=create_overlay(golden, artifacts / "disk.qcow2"))
    xml = harness.vm.templates.render(WINDOWS_TEMPLATE, **values)

What the domain contains and what was verified is in vm-templates/windows/README.md.
"""

from .domain import (
    EDITIONS,
    WINDOWS_TEMPLATE,
    Cdrom,
    Edition,
    Firmware,
    check_host,
    create_overlay,
    find_ovmf,
    find_swtpm,
    windows_domain_values,
)

__all__ = ["EDITIONS", "WINDOWS_TEMPLATE", "Cdrom", "Edition", "Firmware", "check_host", "create_overlay",
           "find_ovmf", "find_swtpm", "windows_domain_values"]
