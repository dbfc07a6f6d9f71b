"""Content policies: the concept vocabulary, per-tenant policies and the gateway's prompt check
(docs/ARCHITECTURE.md, "Content policies")."""
