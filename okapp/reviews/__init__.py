"""Customer reviews: the review page's signed links, submissions, uploads and moderation."""
