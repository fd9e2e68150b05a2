"""Pictures of what a recurrent model does (gate and attention heat-maps), for any task."""
