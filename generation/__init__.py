"""Content generation: templates, brand voice, jobs and variants (filled by the generation issue)."""
