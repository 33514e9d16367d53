"""Authentication, authorisation and cryptography of the control plane."""
