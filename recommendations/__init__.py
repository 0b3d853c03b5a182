"""Product recommendations: a project's catalog, customers and events (imported from CSV or sent to
the ingest API), recommendation jobs that train and evaluate a model, and personalized campaigns
that turn each customer's recommendations into generated copy.

Owns the writes (``services``), the limits of a request (``limits``), importing (``importing``), the
model, training and evaluation (``engine``), the job's life on the worker (``execution``), how its
tasks are reached (``dispatch``, by name) and campaign results (``results``). May import
``generation`` (campaigns are generation jobs), ``billing``, ``workers``, the platform apps and
``core``; never ``config``.
"""
