"""Reading papers: files checked, parsed (PDF, OCR, text, Markdown), cleaned, their lines given roles, and chunked."""
