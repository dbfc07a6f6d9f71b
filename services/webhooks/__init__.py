"""The webhook dispatcher: a process of its own (`atelier webhooks run`) that reads the events of
the jobs that have webhooks from the job store, fans them out to their endpoints as delivery
records, and sends those, signed, with retries, never in a job's path (docs/API.md, "Webhooks";
docs/RELIABILITY.md, "Webhooks")."""
