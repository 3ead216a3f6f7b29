"""An upload handler that stops reading a file past the largest size any piece allows,
so a huge upload is neither kept in memory nor written to the temporary directory."""

from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class SizeLimitUploadHandler(FileUploadHandler):
    def __init__(self, request=None, *, limit_bytes: int):
        super().__init__(request)
        self.limit_bytes = limit_bytes
        self.exceeded = False
        self.exceeded_name = ""

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.limit_bytes:
            self.exceeded = True
            self.exceeded_name = self.file_name or ""
            # Keep the fields already read (the form puts them before the file), drop the rest.
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None
