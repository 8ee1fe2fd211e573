"""The Slack adapter: translation (pure), the outbox, the Bolt app and how it connects."""
