"""Windows 98 specifics: preparing a copy of a user's image to start agent98, and running agent98 under Wine."""
