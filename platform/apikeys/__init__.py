"""Organization API keys: issuing, authentication (``Authorization: Bearer``) and revocation; a key
carries its tenant (``ApiKey.as_tenant``). Imports ``projects``, ``organizations``, ``accounts``,
``audit`` and ``core``.
"""
