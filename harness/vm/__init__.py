"""Virtual machines through libvirt: connection, domain XML, console, events, lifecycle."""
