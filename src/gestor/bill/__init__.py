"""The bill: the distributor's hourly curve and its reconciliation with gestor's books, and the month priced as the retailer bills it (issue 35)."""
