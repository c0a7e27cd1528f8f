"""The bus: NATS JetStream plumbing every service shares (relay, durable consumers, server)."""
