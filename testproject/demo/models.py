from django.db import models


class Thing(models.Model):
    name = models.CharField(max_length=200, unique=True)
    result = models.TextField()

    def __str__(self) -> str:
        return self.name
