import ParleyServer
import ParleyClient
import ArgumentParser
print("hi")
