"""HTTP routes, thin: parse → service → respond. One module per resource."""
