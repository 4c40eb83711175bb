"""Channel files: format, fault models, the spec oracle and the host sensor."""
