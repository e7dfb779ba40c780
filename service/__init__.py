"""droptune's REST API and dashboard (FastAPI). Never imports TensorFlow."""
