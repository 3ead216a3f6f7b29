"""The families' API v1: thin views named <Entity><Action>Api; rules live in
marelle.families (permissions, forms, services)."""
