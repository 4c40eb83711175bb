"""`harness campaign`: many content files through real machines, crashes grouped and minimised."""
