"""Network definitions of the pSp style encoder (IR-SE-50 backbone + feature-pyramid style heads)."""
