"""Paiement au guichet: the family prints a payment slip and pays it in cash at a partner
counter (a tobacconist of a "paiement de proximité" network); the network tells Marelle."""
