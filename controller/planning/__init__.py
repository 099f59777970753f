"""Pure planning: which jobs a matrix makes, which board and backend each gets, and every input shape settled."""
