"""ossabus: OSSA agents as event-driven microservices on NATS, behind OpenAI- and Vercel-compatible APIs."""

__version__ = "0.1.0"
