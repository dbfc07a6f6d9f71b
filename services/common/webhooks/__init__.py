"""Signed webhooks: each tenant's endpoints and secrets (`config`), the Standard Webhooks
signature (`signing`) and the delivery records in Redis (`deliveries`). The dispatcher that
sends them is `services/webhooks/` (docs/API.md, "Webhooks"; docs/RELIABILITY.md)."""
