"""Email: rendering MJML templates, delivery (SMTP or outbox), tracking and suppression."""
