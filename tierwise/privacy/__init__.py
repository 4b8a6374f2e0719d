"""Finding personal data in prompts, and masking it before a prompt leaves the device."""
