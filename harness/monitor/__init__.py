"""The monitor: console lines and libvirt events in, a named verdict out."""
