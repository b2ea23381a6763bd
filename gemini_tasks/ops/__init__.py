"""Operations: the gemini-tasks command and the metrics exporter."""
