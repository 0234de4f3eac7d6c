"""The faces of the engine: the CLI, the web chat, the MCP server, accounts, feedback, exports and source views."""
