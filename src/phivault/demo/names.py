"""Person names for synthetic patients and staff, grouped by origin.

Written out here rather than drawn from Faker: Faker is slow and its lists change between
versions, which would break byte-identical output for a seed. Each group has its own
given and family names and the languages its members may prefer, so that a patient's
name, language and (through the generator) email look like they belong together. Some
patients still get a given name from another group, as in real clinics.

Multi-word names are written with "_" for the space.
"""

from __future__ import annotations

from itertools import accumulate
from typing import NamedTuple


class NameGroup(NamedTuple):
    label: str
    weight: float
    male: tuple[str, ...]
    female: tuple[str, ...]
    family: tuple[str, ...]
    languages: tuple[tuple[str, str], ...]
    """(BCP-47 code, display) of languages other than English members may prefer."""
    non_english: float
    """Share of members whose preferred language is one of `languages`."""


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.replace("_", " ") for word in text.split())


GROUPS: tuple[NameGroup, ...] = (
    NameGroup(
        "us",
        0.56,
        _words("""
            James John Robert Michael William David Richard Joseph Thomas Charles Christopher
            Daniel Matthew Anthony Mark Donald Steven Paul Andrew Joshua Kenneth Kevin Brian
            George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric Jonathan
            Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick
            Raymond Jack Dennis Jerry Tyler Aaron Henry Douglas Peter Adam Nathan Zachary Walter
            Kyle Harold Carl Jeremy Keith Roger Gerald Ethan Arthur Terry Christian Sean Lawrence
            Austin Noah Jesse Albert Bryan Billy Bruce Willie Jordan Dylan Alan Ralph Gabriel Roy
            Wayne Eugene Logan Randy Louis Russell Vincent Philip Bobby Johnny Bradley Liam Mason
            Elijah Oliver Lucas Owen Caleb Wyatt Hunter Connor Landon Colton Grayson Declan
            Everett Silas Theodore Miles Wesley Dominic Tristan Malik Darnell DeShawn Jamal
            Terrence Marcus Tyrone Andre Jermaine Reginald Cedric Darius Xavier Isaiah Jalen
            Kendrick Desmond Calvin Clarence Otis Maurice Lamar Rashad Seamus Finn Callum
        """),
        _words("""
            Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy
            Betty Sandra Margaret Ashley Kimberly Emily Donna Michelle Carol Amanda Melissa
            Deborah Stephanie Dorothy Rebecca Sharon Laura Cynthia Amy Kathleen Angela Shirley
            Brenda Emma Anna Pamela Nicole Samantha Katherine Christine Helen Debra Rachel
            Carolyn Janet Catherine Heather Diane Olivia Julie Joyce Victoria Ruth Virginia
            Lauren Kelly Christina Joan Evelyn Judith Andrea Hannah Megan Cheryl Jacqueline
            Martha Madison Teresa Gloria Sara Janice Ann Kathryn Abigail Sophia Frances Jean
            Alice Judy Isabella Julia Grace Amber Denise Danielle Marilyn Beverly Charlotte
            Natalie Theresa Diana Brittany Doris Kayla Alexis Lori Marie Ava Mia Harper Amelia
            Chloe Ella Avery Scarlett Lily Aria Zoe Nora Hazel Aurora Violet Stella Penelope
            Claire Audrey Savannah Aaliyah Imani Keisha Latoya Tamika Ebony Jasmine Tiana
            Shanice Destiny Monique Kiara Nia Jada Raven Brianna Makayla Octavia Bernice
            Gwendolyn Loretta Mildred Siobhan Maeve Colleen
        """),
        _words("""
            Smith Johnson Williams Brown Jones Miller Davis Wilson Anderson Taylor Thomas Moore
            Martin Jackson Thompson White Harris Clark Lewis Robinson Walker Young Allen King
            Wright Scott Hill Green Adams Baker Nelson Carter Mitchell Roberts Turner Phillips
            Campbell Parker Evans Edwards Collins Stewart Morris Murphy Cook Rogers Morgan Cooper
            Peterson Bailey Reed Kelly Howard Cox Ward Richardson Watson Brooks Wood James
            Bennett Gray Hughes Price Sanders Myers Long Ross Foster Powell Jenkins Perry Russell
            Sullivan Bell Coleman Butler Henderson Barnes Fisher Henry Graham Hamilton Wallace
            West Cole Hayes Bryant Ellis Stevens Murray Ford Marshall Owens McDonald Harrison
            Kennedy Wells Alexander Griffin Hunt Black Holmes Stone Meyer Boyd Mills Warren Fox
            Rose Rice Schmidt Hoffman Becker Schneider Weber Wagner Schultz Keller O'Brien
            O'Connor Gallagher Byrne Fitzgerald Brennan Donovan MacLeod Russo Romano Esposito
            Ricci Marino Greco Bruno Gallo Conti DeLuca Costa Papadopoulos Nikolaidis Washington
            Jefferson Freeman Banks Booker Dixon Tucker Simmons Gaines Mosley Bradford Whitfield
            Lindqvist Johansson Larsen Nielsen Olson Hansen Andersen Dubois Moreau Laurent
            Lefebvre Fontaine Vogel Abernathy McAllister Hawthorne Whitaker Pruitt Calloway
        """),
        (("fr", "French"), ("it", "Italian"), ("de", "German")),
        0.01,
    ),
    NameGroup(
        "hispanic",
        0.19,
        _words("""
            José Juan Luis Carlos Jorge Miguel Jesús Francisco Alejandro Antonio Manuel Pedro
            Ricardo Fernando Javier Roberto Eduardo Sergio Diego Raúl Andrés Mateo Santiago
            Sebastián Emiliano Joaquín Ángel Héctor Rubén Óscar Arturo Alberto Enrique Rafael
            Ernesto Gustavo Julio Ignacio Marco Adrián Hugo Ramón
        """),
        _words("""
            María Guadalupe Juana Margarita Verónica Leticia Rosa Gabriela Alejandra Adriana
            Claudia Carmen Lucía Sofía Valentina Camila Ximena Daniela Fernanda Mariana Paola
            Elena Beatriz Araceli Yolanda Silvia Norma Lorena Natalia Renata Regina Luz
            Esperanza Dolores Marisol Catalina Inés Pilar Rocío Maribel
        """),
        _words("""
            García Rodríguez Martínez Hernández López González Pérez Sánchez Ramírez Torres
            Flores Rivera Gómez Díaz Cruz Morales Reyes Gutiérrez Ortiz Ramos Chávez Ruiz
            Álvarez Mendoza Castillo Jiménez Vásquez Moreno Romero Herrera Medina Aguilar Vargas
            Castro Guzmán Fernández Delgado Salazar Soto Contreras Domínguez Estrada Núñez Peña
            Rojas Navarro Cabrera Espinoza Fuentes Villanueva
        """),
        (("es", "Spanish"),),
        0.45,
    ),
    NameGroup(
        "east_asian",
        0.07,
        _words("""
            Wei Jun Hao Jian Ming Lei Yong Tao Kai Zhiwei Haoran Yichen Minh Duc Tuan Huy Quang
            Thanh Hoang Min-jun Ji-ho Seo-jun Hyun-woo Jae-won Dong-hyun Hiroshi Takeshi Kenji
            Haruto Yuto Sota Daiki Ren Jomar Rodel Arnel Rommel Jericho Bao Long
        """),
        _words("""
            Mei Xiu Ying Lina Hui Fang Xin Yan Jing Qian Yuxi Zihan Linh Lan Mai Thao Huong
            Ngoc Trang Anh Ji-woo Seo-yeon Min-seo Ha-eun Soo-ah Eun-ji Yuki Haruka Sakura Aiko
            Yui Hina Emi Keiko Rowena Maricel Lourdes Jocelyn Marites Thuy
        """),
        _words("""
            Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou Xu Sun Ma Zhu Hu Guo Lin He Gao Luo
            Nguyen Tran Le Pham Hoang Phan Vu Dang Bui Do Kim Lee Park Choi Jung Kang Cho Yoon
            Jang Lim Sato Suzuki Takahashi Tanaka Watanabe Ito Yamamoto Nakamura Kobayashi Kato
            Santos Bautista Dela_Cruz Aquino Manalo Garcia
        """),
        (
            ("zh", "Chinese"),
            ("vi", "Vietnamese"),
            ("ko", "Korean"),
            ("ja", "Japanese"),
            ("tl", "Tagalog"),
        ),
        0.35,
    ),
    NameGroup(
        "south_asian",
        0.05,
        _words("""
            Arjun Rahul Vikram Rohan Amit Sanjay Raj Anil Suresh Ravi Aarav Vivaan Aditya
            Krishna Ishaan Nikhil Pranav Siddharth Karan Deepak Imran Faisal Harpreet Gurpreet
            Manish Venkat
        """),
        _words("""
            Priya Ananya Divya Kavya Lakshmi Pooja Neha Anjali Sunita Meera Aditi Shreya Riya
            Isha Nisha Deepa Swati Aarohi Saanvi Diya Simran Farah Ayesha Nazia Jaspreet Padma
        """),
        _words("""
            Patel Shah Singh Kumar Sharma Gupta Reddy Rao Iyer Nair Mehta Desai Joshi Chopra
            Malhotra Kapoor Agarwal Banerjee Chatterjee Mukherjee Das Bose Pillai Menon Khan
            Ahmed Hussain Chaudhry Qureshi Siddiqui Gill Sandhu Dhillon Grewal Bhatt
        """),
        (("hi", "Hindi"), ("gu", "Gujarati"), ("pa", "Panjabi"), ("ur", "Urdu"), ("bn", "Bengali")),
        0.25,
    ),
    NameGroup(
        "middle_eastern",
        0.04,
        _words("""
            Mohammed Ahmad Ali Omar Hassan Hussein Khalid Youssef Ibrahim Mustafa Tariq Karim
            Samir Nabil Rami Ziad Bilal Hamza Amir Reza Dariush Kaveh Mehmet Emre Farid
        """),
        _words("""
            Fatima Aisha Layla Mariam Noor Yasmin Zainab Hana Rania Salma Leila Dina Huda Amal
            Samira Nadia Rana Lina Shirin Parisa Elif Zeynep Ayla Sahar Ghada
        """),
        _words("""
            Haddad Khoury Nasser Saleh Mansour Hamdan Aziz Rahman Hakimi Farah Ibrahim Abdullah
            Said Karimi Hosseini Ahmadi Rezaei Mohammadi Tehrani Yilmaz Kaya Demir Celik Sahin
            Ozturk Bakr Darwish Jaber Khalil Najjar
        """),
        (("ar", "Arabic"), ("fa", "Persian"), ("tr", "Turkish")),
        0.3,
    ),
    NameGroup(
        "african",
        0.04,
        _words("""
            Chukwuemeka Oluwaseun Adebayo Emeka Obinna Kwame Kofi Kwabena Yaw Tendai Tariku
            Abebe Dawit Yonas Mamadou Ousmane Ibrahima Moussa Sekou Babajide Tunde Chinedu
            Jelani Baraka Juma
        """),
        _words("""
            Ngozi Chioma Adaeze Funmilayo Folake Amara Adwoa Akosua Abena Ama Efua Makeda Selam
            Hiwot Tigist Aminata Fatoumata Mariama Awa Nneka Ifeoma Zawadi Wanjiru Achieng
            Nkechi
        """),
        _words("""
            Okafor Okonkwo Adeyemi Oluwole Eze Nwosu Obi Chukwu Mensah Owusu Boateng Asante
            Osei Appiah Tesfaye Bekele Haile Girma Alemu Diallo Traore Keita Camara Toure Kamau
            Otieno Mwangi Njoroge Abiodun Balogun
        """),
        (("fr", "French"), ("am", "Amharic"), ("yo", "Yoruba"), ("sw", "Swahili")),
        0.2,
    ),
    NameGroup(
        "eastern_european",
        0.05,
        _words("""
            Aleksandr Dmitri Sergei Ivan Nikolai Mikhail Andrei Pavel Oleksandr Taras Bogdan
            Piotr Tomasz Krzysztof Jakub Marek Lukasz Stanislav Viktor Yuri Milan Luka Nikola
            Goran Florin
        """),
        _words("""
            Anastasia Olga Svetlana Irina Tatiana Ekaterina Yulia Oksana Daria Agnieszka
            Katarzyna Magdalena Zofia Ewa Alina Milena Jelena Ivana Marta Ludmila Vera Galina
            Veronika Kateryna Bogdana
        """),
        _words("""
            Ivanov Petrov Smirnov Kuznetsov Popov Sokolov Volkov Novak Kowalski Nowak Wisniewski
            Wojcik Kaminski Lewandowski Zielinski Shevchenko Kovalenko Bondarenko Tkachenko
            Horvat Kovac Popescu Ionescu Petrovic Jovanovic Nikolic Dvorak Svoboda Novotny
            Kovacs Nagy Szabo
        """),
        (("ru", "Russian"), ("uk", "Ukrainian"), ("pl", "Polish")),
        0.25,
    ),
)

GROUP_CUMULATIVE: tuple[float, ...] = tuple(accumulate(group.weight for group in GROUPS))

ALL_MALE: tuple[str, ...] = tuple(dict.fromkeys(n for g in GROUPS for n in g.male))
ALL_FEMALE: tuple[str, ...] = tuple(dict.fromkeys(n for g in GROUPS for n in g.female))
ALL_FAMILY: tuple[str, ...] = tuple(dict.fromkeys(n for g in GROUPS for n in g.family))
