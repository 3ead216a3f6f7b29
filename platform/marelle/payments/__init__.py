"""Generic online payment pages and their glue to the settlement core (no models).

``marelle.payments.urls`` is mounted at ``/paiement/`` on every commune's host;
``marelle.payments.services`` holds what the views, the reconciliation task and refunds
call. Nothing here names a provider: providers come from the plugins.
"""
